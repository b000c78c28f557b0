/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console/adapters: adapters, versions and their metrics, confusion matrix, aliases, download, import. */
import { DataTable, Field, Layout } from './layout.js';

export function AdaptersPage() {
  return (
    <Layout title="Adapters" page="adapters">
      <section class="card">
        <h2>Your adapters</h2>
        <DataTable id="adapters-table" columns={['Name', 'Status', 'Versions', 'Latest accuracy', 'Aliases', 'Actions']} />
      </section>

      <section id="adapter" class="card" hidden aria-labelledby="adapter-title">
        <h2 id="adapter-title">Adapter</h2>
        <p id="adapter-summary"></p>
        <h3>Versions</h3>
        <DataTable id="versions-table" columns={['Version', 'Source', 'Accuracy', 'Macro F1', 'Size', 'Created', 'Actions']} />
        <h3>Aliases</h3>
        <ul id="aliases"></ul>
        <form id="alias-form" class="row" method="post" action="/console/adapters">
          <Field id="alias-name" label="Alias">
            <input id="alias-name" required maxlength={64} placeholder="prod" />
          </Field>
          <Field id="alias-version" label="Version">
            <select id="alias-version" required></select>
          </Field>
          <button type="submit">Point alias</button>
        </form>
        <p id="adapter-error" class="error" role="alert"></p>
      </section>

      <section id="metrics" class="card" hidden aria-labelledby="metrics-title">
        <h2 id="metrics-title">Metrics</h2>
        <p id="metrics-summary"></p>
        <figure>
          <figcaption>Training curve</figcaption>
          <div id="metrics-curve" class="chart"></div>
        </figure>
        <h3>Per class</h3>
        <DataTable id="prf-table" columns={['Class', 'Precision', 'Recall', 'F1', 'Support']} />
        <h3 id="confusion-title">Confusion matrix</h3>
        <fieldset class="toggle">
          <legend>Show</legend>
          <label>
            <input type="radio" name="cm-mode" id="cm-counts" value="counts" checked /> counts
          </label>
          <label>
            <input type="radio" name="cm-mode" id="cm-rows" value="rows" /> row-normalised (recall per true class)
          </label>
        </fieldset>
        <div id="confusion" class="chart scroll" aria-labelledby="confusion-title"></div>
      </section>

      <form id="import-form" class="card" method="post" action="/console/adapters">
        <h2>Import an adapter</h2>
        <p>A <code>.safetensors</code> file in the authors' layout (as downloaded here); it becomes the next version of the adapter with this name.</p>
        <div class="row">
          <Field id="import-name" label="Adapter name">
            <input id="import-name" required maxlength={100} />
          </Field>
          <Field id="import-file" label="File">
            <input id="import-file" type="file" accept=".safetensors" required />
          </Field>
        </div>
        <button type="submit">Import</button>
        <p id="import-error" class="error" role="alert"></p>
      </form>
    </Layout>
  );
}
