/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console/datasets: upload (zip, JSONL or a folder) with progress, list, per-class counts, problems, delete. */
import { DataTable, Field, Layout } from './layout.js';

export function DatasetsPage() {
  return (
    <Layout title="Data sets" page="datasets">
      <form id="upload-form" class="card" method="post" action="/console/datasets">
        <h2>Upload</h2>
        <p>A zip of class folders (<code>cat/1.jpg</code>, <code>dog/2.png</code>, …), a zip with labels.csv or labels.jsonl, a JSONL file, or a folder of class folders.</p>
        <div id="drop" class="drop" tabindex={0} role="button" aria-describedby="drop-text">
          <p id="drop-text">Drop a zip, a JSONL file or a folder here, or choose one:</p>
          <div class="row">
            <label class="filebtn">
              Choose a file
              <input id="upload-file" type="file" accept=".zip,.jsonl,.ndjson,application/zip" />
            </label>
            <label class="filebtn">
              Choose a folder
              <input id="upload-folder" type="file" webkitdirectory multiple />
            </label>
          </div>
          <p id="upload-chosen" class="muted"></p>
        </div>
        <div class="row">
          <Field id="upload-name" label="Name">
            <input id="upload-name" required maxlength={200} />
          </Field>
          <Field id="upload-policy" label="Unreadable files">
            <select id="upload-policy">
              <option value="skip">skip them and report</option>
              <option value="reject">reject the upload</option>
            </select>
          </Field>
        </div>
        <button type="submit" id="upload-submit">Upload</button>
        <div class="progress-wrap">
          <progress id="upload-progress" max={100} value={0} hidden aria-labelledby="upload-progress-text"></progress>
          <span id="upload-progress-text" aria-live="polite"></span>
        </div>
        <p id="upload-error" class="error" role="alert"></p>
      </form>

      <section class="card">
        <h2>Your data sets</h2>
        <DataTable id="datasets-table" columns={['Name', 'Status', 'Images', 'Classes', 'Problems', 'Created', 'Actions']} />
      </section>

      <section id="dataset-detail" class="card" hidden aria-labelledby="dataset-detail-title">
        <h2 id="dataset-detail-title">Data set</h2>
        <p id="dataset-summary"></p>
        <h3>Images per class</h3>
        <DataTable id="dataset-classes" columns={['Class', 'train', 'val', 'test', 'unassigned', 'total']} />
        <h3>Problems</h3>
        <ul id="dataset-problems"></ul>
        <p>
          <a id="dataset-train" class="button" href="/console/training">Train an adapter on it</a>
        </p>
      </section>
    </Layout>
  );
}
