/**
 * The hostile-input corpus: requests an attacker or a careless client sends, each with the answer
 * it must get. Built against live fixtures (tenant A owns an adapter; B is a stranger), so ids are
 * real. The service is started with small limits (see HOSTILE_ENV) so oversized bodies stay cheap.
 */
import { Readable } from 'node:stream';
import { makeZip, replaceBytes } from '../../test/helpers/datasets.js';
import type { Answer, Ask } from './http.js';
import { ADMIN_TOKEN } from './service.js';
import type { TenantFixture } from './fixtures.js';

export const HOSTILE_ENV = { UPLOAD_MAX_BYTES: String(4 * 1024 * 1024), CLASSIFY_MAX_BYTES: String(1024 * 1024) };

export interface HostileCase {
  name: string;
  group: 'upload' | 'classify' | 'auth' | 'other';
  ask: Ask;
  /** Acceptable statuses. */
  status: number[];
  /** Acceptable error codes (when the answer is an error). */
  codes?: string[];
  /** Further check; returns a problem or undefined. */
  check?(a: Answer): string | undefined;
}

const BIDI = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/;

function multipart(parts: Array<{ name: string; value?: string; filename?: string; data?: Buffer; type?: string }>, boundary = 'chaosBoundary7MA4YWxk'): { body: Buffer; headers: Record<string, string> } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = p.filename === undefined ? `form-data; name="${p.name}"` : `form-data; name="${p.name}"; filename="${p.filename}"`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n${p.data !== undefined ? `Content-Type: ${p.type ?? 'application/octet-stream'}\r\n` : ''}\r\n`));
    chunks.push(p.data ?? Buffer.from(p.value ?? ''));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** A stream of `bytes` zero bytes in 64 KiB chunks (an oversized body that is never buffered). */
function zeros(bytes: number): () => Readable {
  return () => {
    let left = bytes;
    const chunk = Buffer.alloc(64 * 1024);
    return new Readable({
      read() {
        if (left <= 0) return void this.push(null);
        const n = Math.min(left, chunk.length);
        left -= n;
        this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
      },
    });
  };
}

/** A PNG header that declares 60000 × 60000 pixels (2.5 Gpx) and nothing else. */
function hugePngHeader(): Buffer {
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const ihdr = Buffer.alloc(25);
  ihdr.writeUInt32BE(13, 0);
  ihdr.write('IHDR', 4, 'latin1');
  ihdr.writeUInt32BE(60000, 8);
  ihdr.writeUInt32BE(60000, 12);
  ihdr[16] = 8;
  ihdr[17] = 2;
  return Buffer.concat([sig, ihdr]);
}

export interface CorpusInput {
  a: TenantFixture;
  b: TenantFixture;
  revokedToken: string;
  png: Buffer;
  datasetZip: Buffer;
}

export async function buildCorpus(x: CorpusInput): Promise<HostileCase[]> {
  const { a, b, png } = x;
  const zipType = { 'content-type': 'application/zip' };
  const b64 = png.toString('base64');
  const classifyPath = `/v1/adapters/${a.adapterId}/classify`;
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28" fill="red"/></svg>');
  const manyEntries = await makeZip(Array.from({ length: 1100 }, (_, i) => ({ name: `c${i % 2}/${i}.png`, data: Buffer.alloc(1024 * 1024 - 1), compress: true })));
  // yazl refuses to write '..' itself: write a placeholder of the same length, then swap the bytes.
  const traversal = replaceBytes(await makeZip([{ name: 'cat/xx/xx/xx/xx/etc/x.png', data: png }, { name: 'dog/a.png', data: png }]), 'xx/xx/xx/xx', '../../../..');
  const bidiZip = await makeZip([
    ...[0, 1, 2].map((i) => ({ name: `ca\u202Et/${i}.png`, data: png })),
    ...[0, 1, 2].map((i) => ({ name: `dog/${i}.png`, data: png })),
    ...[0, 1, 2].map((i) => ({ name: `owl/${i}.png`, data: png })),
  ]);
  const noName = multipart([{ name: 'file', filename: 'd.zip', data: x.datasetZip, type: 'application/zip' }]);
  const twoFiles = multipart([{ name: 'name', value: 'two' }, { name: 'file', filename: 'a.zip', data: x.datasetZip }, { name: 'file', filename: 'b.zip', data: x.datasetZip }]);
  const bogusField = multipart([{ name: 'name', value: 'bogus' }, { name: 'policy', value: 'bogus' }, { name: 'file', filename: 'd.zip', data: x.datasetZip }]);
  const overMultipart = multipart([{ name: 'name', value: 'big' }, { name: 'file', filename: 'd.zip', data: Buffer.alloc(6 * 1024 * 1024) }]);
  const images65 = multipart(Array.from({ length: 65 }, (_, i) => ({ name: 'images', filename: `${i}.png`, data: png, type: 'image/png' })));
  const fan2 = multipart([{ name: 'adapters', value: a.adapterId! }, { name: 'image', filename: '1.png', data: png }, { name: 'image', filename: '2.png', data: png }]);
  const svgPart = multipart([{ name: 'images', filename: 'x.png', data: svg, type: 'image/png' }]);
  const truncatedMultipart = { body: multipart([{ name: 'name', value: 't' }, { name: 'file', filename: 'd.zip', data: x.datasetZip }]).body.subarray(0, 2000), headers: noName.headers };
  const up = (query: string, m: { body: Buffer; headers: Record<string, string> }): Ask => ({ method: 'POST', path: `/v1/datasets${query}`, token: a.token, headers: m.headers, body: m.body });
  const validationOr = (codes: string[]) => ({ status: [400, 413], codes });
  return [
    // uploads
    { name: 'upload: raw zip without name', group: 'upload', ask: { method: 'POST', path: '/v1/datasets', token: a.token, headers: zipType, body: x.datasetZip }, status: [400], codes: ['validation_failed'] },
    { name: 'upload: multipart without name', group: 'upload', ask: up('', noName), status: [400], codes: ['validation_failed'] },
    { name: 'upload: multipart with two file parts', group: 'upload', ask: up('', twoFiles), status: [400], codes: ['validation_failed'] },
    { name: 'upload: policy=bogus (query)', group: 'upload', ask: up('?name=q&policy=bogus', noName), status: [400], codes: ['validation_failed'] },
    { name: 'upload: policy=bogus (form field)', group: 'upload', ask: up('', bogusField), status: [400], codes: ['validation_failed'] },
    { name: 'upload: multipart body over UPLOAD_MAX_BYTES', group: 'upload', ask: up('', overMultipart), status: [413], codes: ['payload_too_large'] },
    { name: 'upload: raw 64 MiB stream over UPLOAD_MAX_BYTES', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=big', token: a.token, headers: zipType, body: zeros(64 * 1024 * 1024) }, status: [413], codes: ['payload_too_large'] },
    { name: 'upload: not a zip', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=nz', token: a.token, headers: zipType, body: Buffer.from('PK\x03\x04 this is not a zip archive at all') }, status: [400], codes: ['invalid_archive', 'invalid_dataset'] },
    { name: 'upload: many-entry zip bomb (1,100 × 1 MiB of zeros)', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=bomb', token: a.token, headers: zipType, body: manyEntries }, ...validationOr(['invalid_archive', 'payload_too_large']) },
    { name: 'upload: path traversal entry', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=trav', token: a.token, headers: zipType, body: traversal }, status: [400], codes: ['invalid_archive'] },
    {
      name: 'upload: class folder with a bidi control character', group: 'upload',
      ask: { method: 'POST', path: '/v1/datasets?name=bidi', token: a.token, headers: zipType, body: bidiZip }, status: [201, 400],
      check: (r) => (r.status === 201 && BIDI.test(JSON.stringify((r.body as { classes?: unknown }).classes ?? '')) ? 'a label with a bidi control character was stored' : undefined),
    },
    { name: 'upload: dataset name with a bidi control character', group: 'upload', ask: { method: 'POST', path: `/v1/datasets?name=${encodeURIComponent('evil\u202Egnp.exe')}`, token: a.token, headers: zipType, body: x.datasetZip }, status: [400], codes: ['validation_failed'] },
    { name: 'upload: empty body', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=e', token: a.token, headers: zipType, body: Buffer.alloc(0) }, status: [400, 415], codes: ['invalid_archive', 'invalid_dataset', 'bad_request', 'validation_failed', 'unsupported_media_type'] },
    { name: 'upload: text/plain body', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=t', token: a.token, headers: { 'content-type': 'text/plain' }, body: 'hello' }, status: [400, 415], codes: ['unsupported_media_type', 'invalid_dataset', 'invalid_archive'] },
    { name: 'upload: truncated multipart', group: 'upload', ask: up('', truncatedMultipart), status: [400], codes: ['bad_request', 'invalid_archive', 'validation_failed'] },
    { name: 'upload: multipart without boundary', group: 'upload', ask: { method: 'POST', path: '/v1/datasets?name=nb', token: a.token, headers: { 'content-type': 'multipart/form-data' }, body: 'x' }, status: [400], codes: ['bad_request'] },
    // classify
    { name: 'classify: 65 image parts', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, headers: images65.headers, body: images65.body }, status: [400], codes: ['validation_failed'] },
    { name: 'fan-out: 2 file parts', group: 'classify', ask: { method: 'POST', path: '/v1/classify/fan-out', token: a.token, headers: fan2.headers, body: fan2.body }, status: [400], codes: ['validation_failed'] },
    { name: 'classify: SVG as base64', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [svg.toString('base64')] } }, status: [400, 415], codes: ['invalid_image', 'unsupported_media_type'] },
    { name: 'classify: SVG as a multipart part named .png', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, headers: svgPart.headers, body: svgPart.body }, status: [400, 415], codes: ['invalid_image', 'unsupported_media_type'] },
    { name: 'classify: data:text/html URL holding a PNG', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [`data:text/html;base64,${b64}`] } }, status: [400, 415], codes: ['validation_failed', 'invalid_image', 'unsupported_media_type'] },
    { name: 'classify: version 2147483648', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [b64], version: 2147483648 } }, status: [400], codes: ['validation_failed'] },
    { name: 'classify: version 1e12', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [b64], version: 1e12 } }, status: [400], codes: ['validation_failed'] },
    { name: 'classify: not base64', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: ['%%%not-base64%%%'] } }, status: [400], codes: ['validation_failed', 'invalid_image'] },
    { name: 'classify: invalid JSON', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, headers: { 'content-type': 'application/json' }, body: '{"images": [' }, status: [400], codes: ['bad_request'] },
    { name: 'classify: JSON body over CLASSIFY_MAX_BYTES', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: ['A'.repeat(2 * 1024 * 1024)] } }, status: [413], codes: ['payload_too_large'] },
    { name: 'classify: truncated PNG', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [png.subarray(0, 40).toString('base64')] } }, status: [400], codes: ['invalid_image'] },
    { name: 'classify: PNG declaring 60000 × 60000 pixels', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [hugePngHeader().toString('base64')] } }, status: [400, 413], codes: ['invalid_image', 'payload_too_large'] },
    { name: 'classify: topK -1', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, json: { images: [b64], topK: -1 } }, status: [400], codes: ['validation_failed'] },
    { name: 'classify: unknown adapter', group: 'classify', ask: { method: 'POST', path: '/v1/adapters/no-such-adapter/classify', token: a.token, json: { images: [b64] } }, status: [404], codes: ['not_found'] },
    { name: 'classify: raw image/png body holding an SVG', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, headers: { 'content-type': 'image/png' }, body: svg }, status: [400], codes: ['invalid_image'] },
    { name: 'classify: raw image body, topK=abc in the query', group: 'classify', ask: { method: 'POST', path: `${classifyPath}?topK=abc`, token: a.token, headers: { 'content-type': 'image/png' }, body: png }, status: [400], codes: ['validation_failed'] },
    { name: 'classify: no content type', group: 'classify', ask: { method: 'POST', path: classifyPath, token: a.token, body: 'x' }, status: [400, 415], codes: ['unsupported_media_type', 'bad_request'] },
    { name: 'alias: PUT version 2147483648', group: 'other', ask: { method: 'PUT', path: `/v1/adapters/${a.adapterId}/aliases/x`, token: a.token, json: { version: 2147483648 } }, status: [400], codes: ['validation_failed'] },
    { name: 'alias: PUT version 1e12', group: 'other', ask: { method: 'PUT', path: `/v1/adapters/${a.adapterId}/aliases/x`, token: a.token, json: { version: 1e12 } }, status: [400], codes: ['validation_failed'] },
    { name: 'versions: GET version 99999999999', group: 'other', ask: { method: 'GET', path: `/v1/adapters/${a.adapterId}/versions/99999999999`, token: a.token }, status: [400, 404], codes: ['validation_failed', 'not_found'] },
    { name: 'list: limit=1e12', group: 'other', ask: { method: 'GET', path: '/v1/datasets?limit=1000000000000', token: a.token }, status: [400], codes: ['validation_failed'] },
    { name: 'list: cursor that is not one', group: 'other', ask: { method: 'GET', path: '/v1/datasets?cursor=%00%ff..', token: a.token }, status: [400], codes: ['validation_failed'] },
    { name: 'idempotency: key with a non-ASCII character', group: 'other', ask: { method: 'POST', path: '/v1/keys', token: a.token, headers: { 'idempotency-key': encodeURIComponent('clé') + '\u00e9' }, json: { name: 'k', scopes: ['classify'] } }, status: [400, 403], codes: ['validation_failed', 'forbidden'] },
    { name: 'path: NUL byte in an id', group: 'other', ask: { method: 'GET', path: '/v1/adapters/%00abc', token: a.token }, status: [400, 404], codes: ['validation_failed', 'not_found', 'bad_request'] },
    { name: 'unknown route', group: 'other', ask: { method: 'GET', path: '/v1/nothing-here', token: a.token }, status: [404] },
    // auth
    { name: 'auth: no token', group: 'auth', ask: { method: 'GET', path: '/v1/adapters' }, status: [401], codes: ['unauthenticated'] },
    { name: 'auth: empty bearer', group: 'auth', ask: { method: 'GET', path: '/v1/adapters', headers: { authorization: 'Bearer ' } }, status: [401], codes: ['unauthenticated'] },
    { name: 'auth: basic scheme', group: 'auth', ask: { method: 'GET', path: '/v1/adapters', headers: { authorization: 'Basic YTpi' } }, status: [401], codes: ['unauthenticated'] },
    { name: 'auth: revoked key', group: 'auth', ask: { method: 'GET', path: '/v1/adapters', token: x.revokedToken }, status: [401], codes: ['unauthenticated'] },
    { name: 'auth: 8 KiB token', group: 'auth', ask: { method: 'GET', path: '/v1/adapters', token: `dtl_${'x'.repeat(8192)}` }, status: [401], codes: ['unauthenticated'] },
    { name: 'auth: 20 KiB of headers', group: 'auth', ask: { method: 'GET', path: '/v1/adapters', token: a.token, headers: { 'x-filler': 'y'.repeat(20 * 1024) } }, status: [431, 400] },
    { name: 'auth: tenant key on an admin route', group: 'auth', ask: { method: 'GET', path: '/v1/tenants', token: a.token }, status: [401, 403], codes: ['unauthenticated', 'forbidden'] },
    { name: 'auth: admin token on a tenant route', group: 'auth', ask: { method: 'GET', path: '/v1/adapters', token: ADMIN_TOKEN }, status: [401, 403], codes: ['unauthenticated', 'forbidden'] },
    { name: 'auth: B classifies with A\'s adapter id', group: 'auth', ask: { method: 'POST', path: classifyPath, token: b.token, json: { images: [b64] } }, status: [404], codes: ['not_found'] },
    { name: '/metrics without a token', group: 'auth', ask: { method: 'GET', path: '/metrics' }, status: [200, 401, 403, 404], check: (r) => (r.text.includes(a.id) ? '/metrics shows a tenant id' : undefined) },
  ];
}
