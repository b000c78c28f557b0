/**
 * A memory-lean replacement for the tfjs engine's `gradients` (tfjs-core 4.22), installed
 * process-wide at backend start-up (install.ts), so tf.variableGrads, tf.grads and every custom
 * gradient in the process use it alike (training steps and their memory baselines included).
 *
 * Why: the stock back-propagation (tape.ts backpropagateGradients) keeps every intermediate
 * gradient in one map until the whole backward pass ends, and the tensors each taped op saved for
 * its backward until then too. Its peak is therefore all saved activations PLUS all activation
 * gradients at once. Here, walking the tape backwards,
 * - an op's output gradients are disposed as soon as that op is processed (every consumer of an
 *   output comes later on the tape, so it has already contributed its share), and
 * - the op's saved tensors are disposed right after its gradient is computed,
 * so the backward pass frees memory as fast as it allocates it, as PyTorch's autograd does.
 * Saved tensors of ops off the x→y path are freed at the end, as the stock engine does.
 *
 * The gradient functions, their order and the accumulation (add of the running sum and the new
 * term) are the stock ones, so results are bit-identical. Higher-order gradients (a gradient
 * call inside another, gradientDepth > 0) go to the stock implementation unchanged.
 */
import * as tf from '@tensorflow/tfjs';
import type { EngineInternals, GradientsFn, TapeNode } from './tfjs-internals.js';

/** The tape nodes on a path from some x to y, with inputs pruned to those that depend on an x (as tape.ts). */
function pathNodes(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    for (const name in node.inputs) {
      if (fromX.has(node.inputs[name].id)) {
        for (const o of node.outputs) fromX.add(o.id);
        nodesFromX.add(node.id);
        break;
      }
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const name in node.inputs) toY.add(node.inputs[name].id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const name in node.inputs) if (fromX.has(node.inputs[name].id)) inputs[name] = node.inputs[name];
    out.push({ ...node, inputs });
  }
  return out;
}

/** engine.gradients, leaner; `stock` (the engine's own, bound) takes the nested calls. */
export function leanGradients(engine: EngineInternals, stock: GradientsFn): GradientsFn {
  return (f, xs, dy, allowNoGradients = false) => {
    if (engine.state.gradientDepth > 0) return stock(f, xs, dy, allowNoGradients);
    if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
    if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy('forward', f),
    );
    if (!(y instanceof tf.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
    const tape = engine.state.activeTape ?? [];
    const nodes = pathNodes(tape, xs, y);
    if (!allowNoGradients && nodes.length === 0) {
      throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
    }
    return engine.tidy('backward', () => {
      // Gradient per tensor id; `holders` counts map entries per gradient tensor, because a
      // gradient function may hand its dy on unchanged to an input.
      const grads = new Map<number, tf.Tensor>();
      const holders = new Map<number, number>();
      const seed = dy ?? tf.onesLike(y);
      const keep = new Set(xs.map((x) => x.id));
      const hold = (id: number, t: tf.Tensor) => {
        grads.set(id, t);
        holders.set(t.id, (holders.get(t.id) ?? 0) + 1);
      };
      const drop = (id: number) => {
        const t = grads.get(id);
        if (t === undefined) return;
        grads.delete(id);
        const left = holders.get(t.id)! - 1;
        if (left > 0) {
          holders.set(t.id, left);
          return;
        }
        holders.delete(t.id);
        if (t !== seed) t.dispose(); // the caller's dy is the caller's
      };
      hold(y.id, seed);
      for (let i = nodes.length - 1; i >= 0; i--) {
        const node = nodes[i];
        if (node.gradient == null) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
        const inputGrads = node.gradient(node.outputs.map((o) => grads.get(o.id) ?? null));
        for (const name in node.inputs) {
          if (!(name in inputGrads)) {
            throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGrads)}.`);
          }
          const dx = engine.tidy(() => inputGrads[name]());
          const x = node.inputs[name];
          if (dx.dtype !== 'float32') {
            throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
          }
          if (!tf.util.arraysEqual(dx.shape, x.shape)) {
            throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
          }
          const current = grads.get(x.id);
          if (current === undefined) {
            hold(x.id, dx);
          } else {
            const sum = tf.add(current, dx);
            drop(x.id);
            if (!holders.has(dx.id) && dx !== seed) dx.dispose();
            hold(x.id, sum);
          }
        }
        for (const o of node.outputs) if (!keep.has(o.id)) drop(o.id);
        for (const t of node.saved ?? []) if (!holders.has(t.id)) t.dispose();
      }
      const result = xs.map((x) => grads.get(x.id)) as tf.Tensor[];
      // As the stock engine: free what every taped op saved and close the tape.
      for (const node of tape) for (const t of node.saved ?? []) if (!holders.has(t.id)) t.dispose();
      engine.state.activeTape = null;
      return { value: y, grads: result };
    });
  };
}
