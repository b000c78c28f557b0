/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console/try: classify a dropped, pasted or chosen image with one adapter, or several side by side. */
import { Field, Layout } from './layout.js';

export function TryPage() {
  return (
    <Layout title="Try it" page="try">
      <form id="try-form" class="card" method="post" action="/console/try">
        <fieldset>
          <legend>Adapters (two or more: fan-out, one backbone pass)</legend>
          <div id="try-adapters" class="checks"></div>
        </fieldset>
        <div class="row">
          <Field id="try-version" label="Version or alias" hint="Empty: latest. Applies to every adapter picked.">
            <input id="try-version" maxlength={64} placeholder="latest" aria-describedby="try-version-hint" />
          </Field>
          <Field id="try-topk" label="Top labels">
            <input id="try-topk" type="number" min={1} max={100} value="5" inputmode="numeric" />
          </Field>
        </div>
        <div id="try-drop" class="drop" tabindex={0} role="button" aria-describedby="try-drop-text">
          <p id="try-drop-text">Drop an image here, paste one (Ctrl+V), or choose a file:</p>
          <label class="filebtn">
            Choose an image
            <input id="try-file" type="file" accept="image/*" />
          </label>
          <img id="try-preview" alt="The image to classify" hidden />
        </div>
        <button type="submit">Classify</button>
        <p id="try-error" class="error" role="alert"></p>
      </form>
      <section class="card" aria-labelledby="try-results-title">
        <h2 id="try-results-title">Results</h2>
        <div id="try-results" class="results"></div>
      </section>
    </Layout>
  );
}
