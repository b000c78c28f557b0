/** Turns a baseline's `fit` into the runner's `run`: fit on the trainer's train rows, score val and test. */
import { accuracyOf, range } from '../recipe.js';
import type { BaselineMethod, FitArgs, Fitted, Method, RunOutcome, StudyTask } from './types.js';

export function baseline(m: Omit<Method, 'run'> & { fit(args: FitArgs): Fitted }): BaselineMethod {
  return {
    ...m,
    async run(t: StudyTask, lr: number | undefined): Promise<RunOutcome> {
      if (lr === undefined) throw new Error(`${m.id} needs a learning rate`);
      const { backbone, task, plan, recipe } = t;
      const t0 = performance.now();
      const fitted = m.fit({ backbone, set: task.train, rows: plan.train, classes: task.labels.length, lr, recipe });
      const seconds = (performance.now() - t0) / 1000;
      try {
        const testRows = range(task.test.labels.length);
        return {
          valAcc: accuracyOf(fitted.predict(task.train, plan.val), task.train, plan.val),
          testAcc: accuracyOf(fitted.predict(task.test, testRows), task.test, testRows),
          trainableParams: fitted.trainableParams,
          losses: fitted.losses,
          seconds,
          lr,
        };
      } finally {
        fitted.dispose();
      }
    },
  };
}
