/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** /console/admin: tenants and their keys, with the admin token. */
import { DataTable, Field, Layout } from './layout.js';
import { ScopeChecks, TokenOnce } from './keys.js';

export function AdminPage() {
  return (
    <Layout title="Administration" page="admin">
      <form id="tenant-form" class="card" method="post" action="/console/admin">
        <h2>Create a tenant</h2>
        <div class="row">
          <Field id="tenant-name" label="Tenant name">
            <input id="tenant-name" required maxlength={100} />
          </Field>
        </div>
        <button type="submit">Create tenant</button>
        <p id="tenant-error" class="error" role="alert"></p>
      </form>
      <section class="card">
        <h2>Tenants</h2>
        <DataTable id="tenants-table" columns={['Name', 'Id', 'Created', 'Actions']} />
      </section>
      <section id="tenant" class="card" hidden aria-labelledby="tenant-title">
        <h2 id="tenant-title">Tenant</h2>
        <p id="tenant-usage"></p>
        <form id="tkey-form" method="post" action="/console/admin">
          <h3>Create a key for this tenant</h3>
          <Field id="tkey-name" label="Name">
            <input id="tkey-name" maxlength={100} placeholder="admin" />
          </Field>
          <ScopeChecks prefix="tkey-scope" />
          <button type="submit">Create key</button>
          <p id="tkey-error" class="error" role="alert"></p>
          <TokenOnce prefix="tkey" />
        </form>
        <h3>Keys</h3>
        <DataTable id="tkeys-table" columns={['Name', 'Prefix', 'Scopes', 'State', 'Actions']} />
        <button type="button" id="tenant-delete" class="danger">
          Delete this tenant and everything it owns
        </button>
      </section>
    </Layout>
  );
}
