/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console/keys: the tenant's API keys (needs the 'manage' scope): create (token shown once), list, revoke. */
import { DataTable, Field, Layout } from './layout.js';

export function ScopeChecks(props: { prefix: string }) {
  return (
    <fieldset>
      <legend>Scopes</legend>
      {(['classify', 'train', 'manage'] as const).map((s) => (
        <label>
          <input type="checkbox" id={`${props.prefix}-${s}`} value={s} checked={s !== 'manage'} /> {s}
        </label>
      ))}
    </fieldset>
  );
}

export function TokenOnce(props: { prefix: string }) {
  return (
    <div id={`${props.prefix}-created`} class="once" hidden>
      <p>
        <strong>Copy this key now.</strong> It is shown only once.
      </p>
      <div class="row">
        <label class="sr" for={`${props.prefix}-token`}>
          New API key
        </label>
        <input id={`${props.prefix}-token`} readonly class="mono" />
        <button type="button" id={`${props.prefix}-copy`}>
          Copy
        </button>
      </div>
    </div>
  );
}

export function KeysPage() {
  return (
    <Layout title="API keys" page="keys">
      <form id="key-form" class="card" method="post" action="/console/keys">
        <h2>Create a key</h2>
        <Field id="key-name" label="Name">
          <input id="key-name" maxlength={100} placeholder="ci" />
        </Field>
        <ScopeChecks prefix="key-scope" />
        <button type="submit">Create key</button>
        <p id="key-error" class="error" role="alert"></p>
        <TokenOnce prefix="key" />
      </form>
      <section class="card">
        <h2>Keys</h2>
        <DataTable id="keys-table" columns={['Name', 'Prefix', 'Scopes', 'Created', 'Last used', 'State', 'Actions']} />
      </section>
    </Layout>
  );
}
