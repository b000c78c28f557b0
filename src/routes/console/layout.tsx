/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The frame every console page shares: head (one stylesheet, one module script, both from this
 * process), navigation, a live region for notices. Pages hold no tenant data: the browser fetches
 * it from the public /v1 API with the key kept in sessionStorage, so nothing secret is ever in the
 * HTML, a URL or a server log.
 */
import type { Child } from 'hono/jsx';

export const NAV = [
  { page: 'datasets', href: '/console/datasets', label: 'Data sets' },
  { page: 'training', href: '/console/training', label: 'Training' },
  { page: 'adapters', href: '/console/adapters', label: 'Adapters' },
  { page: 'try', href: '/console/try', label: 'Try it' },
  { page: 'keys', href: '/console/keys', label: 'Keys' },
  { page: 'admin', href: '/console/admin', label: 'Admin' },
] as const;

export interface LayoutProps {
  title: string;
  /** The page's name: its nav entry and its script, /console/assets/<page>.js. */
  page: string;
  children?: Child;
}

export function Layout({ title, page, children }: LayoutProps) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="no-referrer" />
        <title>{`${title} · dtl-host console`}</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <script type="module" src={`/console/assets/${page}.js`}></script>
      </head>
      <body data-page={page}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href="/console">
            dtl-host console
          </a>
          <nav aria-label="Console">
            <ul>
              {NAV.map((n) => (
                <li>
                  <a href={n.href} aria-current={n.page === page ? 'page' : undefined}>
                    {n.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
          <span id="who" class="who"></span>
          <button type="button" id="signout" class="secondary" hidden>
            Sign out
          </button>
        </header>
        <main id="main" tabindex={-1}>
          <h1>{title}</h1>
          <div id="notice" class="notice" role="status" aria-live="polite"></div>
          {children}
        </main>
      </body>
    </html>
  );
}

/** A labelled field; inputs carry no `name`, so a form that ever submitted natively would send nothing. */
export function Field(props: { id: string; label: string; children: Child; hint?: string }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint ? <small id={`${props.id}-hint`}>{props.hint}</small> : null}
    </div>
  );
}

/** A table the page's script fills: its header row here, the body rows from the API. */
export function DataTable(props: { id: string; columns: string[] }) {
  return (
    <div class="scroll">
      <table id={props.id}>
        <thead>
          <tr>
            {props.columns.map((c) => (
              <th scope="col">{c}</th>
            ))}
          </tr>
        </thead>
        <tbody></tbody>
      </table>
    </div>
  );
}
