// What the browser benchmarks share: an Arno server of its own (a release build, SQLite, a fresh
// data folder), headless Chromium, the first Admin by the setup page, and JSON calls made from a
// signed-in page (its session and CSRF token).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const yjsRequire = createRequire(new URL('../yjs/package.json', import.meta.url));
export const Y = yjsRequire('yjs');
const { WebsocketProvider } = yjsRequire('y-websocket');
const WS = yjsRequire('ws');

export const PASSWORD = 'correct horse battery staple';

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

/**
 * Arno from `ARNO_BIN` on free ports, with `env` added (and the caller's `ARNO_*` left out), and a
 * browser. Returns `{ base, setupUrl, browser, dataRoot, close }`.
 */
export async function startBench(name, env = {}) {
  const bin = process.env.ARNO_BIN;
  if (!bin) throw new Error('set ARNO_BIN');
  const dataRoot = mkdtempSync(join(tmpdir(), `arno-bench-${name}-`));
  const [port, metricsPort] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${port}`;
  const all = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARNO_')));
  Object.assign(all, {
    ARNO_CONFIG: '', ARNO_DATA_DIR: join(dataRoot, 'data'), ARNO_LISTEN: `127.0.0.1:${port}`,
    ARNO_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, ARNO_LOG: 'warn',
  }, typeof env === 'function' ? env(dataRoot) : env);
  const server = spawn(bin, ['serve'], { env: all, stdio: ['ignore', 'pipe', 'inherit'] });
  const setupUrl = await new Promise((resolve, reject) => {
    let buf = '';
    server.stdout.on('data', (chunk) => {
      buf += chunk;
      const m = buf.match(/(http:\/\/\S+\/setup\?token=[A-Za-z0-9_-]+)/);
      if (m) resolve(m[1]);
    });
    server.once('exit', (code) => reject(new Error(`arno exited with ${code}`)));
  });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  const close = async () => {
    await browser.close();
    server.kill('SIGTERM');
    rmSync(dataRoot, { recursive: true, force: true });
  };
  return { base, setupUrl, browser, dataRoot, close };
}

/** The first Admin, created on the setup page of a fresh page of `context`; returns the page. */
export async function createAdmin(context, setupUrl, base, email = 'bench@example.com') {
  const page = await context.newPage();
  await page.goto(setupUrl);
  await page.getByLabel('E-mail address').fill(email);
  await page.getByLabel('Full name').fill('Bench Mark');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create administrator' }).click();
  await page.waitForURL(`${base}/`);
  return page;
}

/** Signs `page` in (a fresh context of its own). */
export async function signIn(page, base, email = 'bench@example.com') {
  await page.goto(`${base}/login`);
  await page.getByLabel('E-mail address').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Password').press('Enter');
  await page.waitForURL(`${base}/`);
}

/** A JSON API call made by a signed-in page (its cookie, the CSRF token of the page it shows). */
export const call = (page, method, path, body) => page.evaluate(async ([m, p, b]) => {
  const csrf = document.querySelector('input[name=csrf_token]').value;
  const r = await fetch(p, { method: m, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: b && JSON.stringify(b) });
  if (!r.ok) throw new Error(`${m} ${p}: ${r.status} ${await r.text()}`);
  return r.json();
}, [method, path, body]);

/** A component spec with one text-editable string prop and an event (ids from `n`). */
export const uuid = (n, k) => `${String(k).padStart(8, '0')}-0000-4000-8000-${String(n).padStart(12, '0')}`;
export function widgetSpec(n, name = `Widget ${n}`) {
  return `---\nid: ${uuid(n, 1)}\nname: ${name}\n---\n# ${name}\n\n<!-- arno:props v1 -->\n| id | name | type | default | textEditable |\n|---|---|---|---|---|\n| ${uuid(n, 2)} | label | string | "x" | true |\n<!-- /arno:props -->\n\n<!-- arno:events v1 -->\n| id | name |\n|---|---|\n| ${uuid(n, 3)} | onClick |\n<!-- /arno:events -->\n`;
}

/** p50, p95, max and the share under 20 ms of a list of durations. */
export function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50: q(0.5), p95: q(0.95), max: s[s.length - 1], under20: s.filter((x) => x < 20).length / s.length };
}

/** The number rounded, with "ms". */
export const ms = (x) => `${Math.round(x)} ms`;

/**
 * The project's workflow as a stock Yjs client (y-websocket) over the live WebSocket, synced:
 * `{ doc, screens, edges, flush, close }`; `flush()` waits until what was written has been sent.
 */
export async function liveWorkflow(page, base, projectId) {
  const { ticket } = await call(page, 'POST', `/api/v1/projects/${projectId}/workflow/ticket`);
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`${base.replace('http', 'ws')}/api/v1/workflow`, projectId, doc,
    { WebSocketPolyfill: WS, params: { ticket }, disableBc: true, resyncInterval: -1 });
  await new Promise((resolve) => provider.once('sync', resolve));
  const flush = async () => {
    while (provider.ws && provider.ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 20));
  };
  const close = async () => {
    await flush();
    // Durable before it is acknowledged; a moment for the last batch to be stored.
    await new Promise((r) => setTimeout(r, 1500));
    provider.destroy();
    // Its awareness keeps a timer until the document goes.
    doc.destroy();
  };
  return { doc, screens: doc.getMap('screens'), edges: doc.getArray('edges'), flush, close };
}
