/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console/training: start a job (defaults, or the advanced fold), watch it live over SSE, cancel. */
import { DataTable, Field, Layout } from './layout.js';

export function TrainingPage() {
  return (
    <Layout title="Training" page="training">
      <form id="train-form" class="card" method="post" action="/console/training">
        <h2>Train an adapter</h2>
        <div class="row">
          <Field id="train-dataset" label="Data set">
            <select id="train-dataset" required></select>
          </Field>
          <Field id="train-name" label="Adapter name" hint="An existing name gets a new version.">
            <input id="train-name" required maxlength={100} aria-describedby="train-name-hint" />
          </Field>
        </div>
        <details>
          <summary>Advanced</summary>
          <p class="muted">Empty fields take the service's defaults (learning rate and variant are searched on the validation split).</p>
          <div class="row">
            <Field id="hp-epochs" label="Epochs">
              <input id="hp-epochs" type="number" min={1} max={1000} inputmode="numeric" />
            </Field>
            <Field id="hp-lr" label="Learning rate">
              <input id="hp-lr" type="number" step="any" min={0} placeholder="auto" />
            </Field>
            <Field id="hp-variant" label="Variant">
              <select id="hp-variant">
                <option value="">auto</option>
                <option value="dtl">DTL</option>
                <option value="dtl+">DTL+</option>
              </select>
            </Field>
            <Field id="hp-budget" label="Search budget">
              <select id="hp-budget">
                <option value="">default</option>
                <option value="fast">fast</option>
                <option value="balanced">balanced</option>
                <option value="best">best</option>
              </select>
            </Field>
            <Field id="hp-batch" label="Batch size">
              <input id="hp-batch" type="number" min={1} max={4096} inputmode="numeric" />
            </Field>
            <Field id="hp-warmup" label="Warm-up epochs">
              <input id="hp-warmup" type="number" min={0} max={1000} inputmode="numeric" />
            </Field>
            <Field id="hp-patience" label="Early-stopping patience" hint="0 turns early stopping off.">
              <input id="hp-patience" type="number" min={0} max={1000} inputmode="numeric" aria-describedby="hp-patience-hint" />
            </Field>
          </div>
        </details>
        <button type="submit">Start training</button>
        <p id="train-error" class="error" role="alert"></p>
      </form>

      <section id="job" class="card" hidden aria-labelledby="job-title">
        <h2 id="job-title">Job</h2>
        <dl class="facts">
          <dt>Status</dt>
          <dd id="job-status"></dd>
          <dt>Epoch</dt>
          <dd id="job-epoch">–</dd>
          <dt>Remaining</dt>
          <dd id="job-eta">–</dd>
          <dt>Validation accuracy</dt>
          <dd id="job-acc">–</dd>
        </dl>
        <p id="job-error" class="error" role="alert"></p>
        <p id="job-done"></p>
        <div class="charts">
          <figure>
            <figcaption>Loss per epoch</figcaption>
            <div id="chart-loss" class="chart"></div>
          </figure>
          <figure>
            <figcaption>Accuracy per epoch</figcaption>
            <div id="chart-acc" class="chart"></div>
          </figure>
        </div>
        <button type="button" id="job-cancel" class="danger">Cancel job</button>
      </section>

      <section class="card">
        <h2>Recent jobs</h2>
        <DataTable id="jobs-table" columns={['Job', 'Status', 'Created', 'Result']} />
      </section>
    </Layout>
  );
}
