// The workflow canvas at scale, in headless Chromium (scripts/bench-canvas): a workflow of
// SCREENS screens (INSTANCES instances each, a text prop set on every one, an edge from each
// screen to the next) is written over the live WebSocket by a stock Yjs client, then a fresh
// browser opens the canvas. Measured: the time to the first picture, and frame times while
// panning — with everything in view (far: boxes and names) and at 100 % (the schematic boxes) —
// and while zooming. Prints Markdown for docs/performance.md.
//
// Environment: ARNO_BIN (a release build), CHROMIUM; SCREENS (2000), INSTANCES (10), FRAMES (300).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const yjsRequire = createRequire(new URL('../yjs/package.json', import.meta.url));
const Y = yjsRequire('yjs');
const { WebsocketProvider } = yjsRequire('y-websocket');
const WS = yjsRequire('ws');

const BIN = process.env.ARNO_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENS = Number(process.env.SCREENS || 2000);
const INSTANCES = Number(process.env.INSTANCES || 10);
const FRAMES = Number(process.env.FRAMES || 240);
const COMPONENTS = 20;
if (!BIN) throw new Error('set ARNO_BIN');

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

const dataRoot = mkdtempSync(join(tmpdir(), 'arno-bench-canvas-'));
const [port, metricsPort] = [await freePort(), await freePort()];
const base = `http://127.0.0.1:${port}`;
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARNO_')));
Object.assign(env, {
  ARNO_CONFIG: '', ARNO_DATA_DIR: join(dataRoot, 'data'), ARNO_LISTEN: `127.0.0.1:${port}`,
  ARNO_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, ARNO_LOG: 'warn',
});
const server = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
const setupUrl = await new Promise((resolve, reject) => {
  let buf = '';
  server.stdout.on('data', (chunk) => {
    buf += chunk;
    const m = buf.match(/(http:\/\/\S+\/setup\?token=[A-Za-z0-9_-]+)/);
    if (m) resolve(m[1]);
  });
  server.once('exit', (code) => reject(new Error(`arno exited with ${code}`)));
});

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(setupUrl);
  await page.getByLabel('E-mail address').fill('bench@example.com');
  await page.getByLabel('Full name').fill('Bench Mark');
  await page.getByLabel('Password').fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Create administrator' }).click();
  await page.waitForURL(`${base}/`);

  // A project with COMPONENTS components, each with a text-editable label.
  const call = (method, path, body) => page.evaluate(async ([m, p, b]) => {
    const csrf = document.querySelector('input[name=csrf_token]').value;
    const r = await fetch(p, { method: m, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: b && JSON.stringify(b) });
    if (!r.ok) throw new Error(`${m} ${p}: ${r.status} ${await r.text()}`);
    return r.json();
  }, [method, path, body]);
  const project = await call('POST', '/api/v1/projects', { name: 'Bench' });
  const uuid = (n, k) => `${String(k).padStart(8, '0')}-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const components = [];
  for (let c = 0; c < COMPONENTS; c++) {
    const id = uuid(c, 1);
    const label = uuid(c, 2);
    const text = `---\nid: ${id}\nname: Widget ${c}\n---\n# Widget ${c}\n\n<!-- arno:props v1 -->\n| id | name | type | default | textEditable |\n|---|---|---|---|---|\n| ${label} | label | string | "x" | true |\n<!-- /arno:props -->\n\n<!-- arno:events v1 -->\n| id | name |\n|---|---|\n| ${uuid(c, 3)} | onClick |\n<!-- /arno:events -->\n`;
    await call('PUT', `/api/v1/projects/${project.id}/specs/Design_system/Widget${c}.md`, { content: text, base_version: 0, session_id: 'bench' });
    components.push({ id, label, click: uuid(c, 3) });
  }

  // The workflow, written by a stock Yjs client in batches of 100 screens.
  const { ticket } = await call('POST', `/api/v1/projects/${project.id}/workflow/ticket`);
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`${base.replace('http', 'ws')}/api/v1/workflow`, project.id, doc,
    { WebSocketPolyfill: WS, params: { ticket }, disableBc: true, resyncInterval: -1 });
  await new Promise((resolve) => provider.once('sync', resolve));
  const screens = doc.getMap('screens');
  const edges = doc.getArray('edges');
  const columns = Math.ceil(Math.sqrt(SCREENS * 1.6));
  const written = Date.now();
  for (let b = 0; b < SCREENS; b += 100) {
    doc.transact(() => {
      for (let i = b; i < Math.min(SCREENS, b + 100); i++) {
        const s = new Y.Map();
        const id = `screen-${i}`;
        screens.set(id, s);
        s.set('id', id);
        s.set('name', `Screen ${i}`);
        s.set('presentation', 'page');
        s.set('x', (i % columns) * 280);
        s.set('y', Math.floor(i / columns) * 320);
        const inst = (n) => {
          const c = components[(i + n) % COMPONENTS];
          const m = new Y.Map();
          m.set('id', `${id}-i${n}`);
          m.set('component_id', c.id);
          const props = new Y.Map();
          m.set('props', props);
          props.set(c.label, `Text ${n}`);
          m.set('children', new Y.Array());
          return m;
        };
        const root = inst(0);
        s.set('root', root);
        root.get('children').push(Array.from({ length: INSTANCES - 1 }, (_, n) => inst(n + 1)));
        if (i + 1 < SCREENS) {
          const e = new Y.Map();
          edges.push([e]);
          e.set('id', `edge-${i}`);
          const c = components[i % COMPONENTS];
          e.set('from', { screen_id: id, instance_id: `${id}-i0`, event_id: c.click });
          e.set('to', { screen_id: `screen-${i + 1}` });
          e.set('action', 'navigate');
        }
      }
    });
    while (provider.ws && provider.ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 20));
  }
  const docBytes = Y.encodeStateAsUpdate(doc).length;
  // The server has it all once a fresh client syncs to the same size.
  await new Promise((r) => setTimeout(r, 1500));
  provider.destroy();
  const seedSeconds = (Date.now() - written) / 1000;
  if (process.env.BENCH_KEEP) {
    console.log(`KEEP ${base} ${project.slug}`);
    await new Promise((r) => setTimeout(r, Number(process.env.BENCH_KEEP) * 1000));
  }

  // A fresh browser tab (no saved viewport): the first picture, with everything in view.
  const fresh = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const view = await fresh.newPage();
  await view.goto(`${base}/login`);
  await view.getByLabel('E-mail address').fill('bench@example.com');
  await view.getByLabel('Password').fill('correct horse battery staple');
  await view.getByLabel('Password').press('Enter');
  await view.waitForURL(`${base}/`);
  const firstPicture = [];
  const serverPicture = [];
  for (let run = 0; run < 3; run++) {
    await view.evaluate(() => localStorage.clear());
    await view.goto(`${base}/projects/${project.slug}/workflow`);
    await view.waitForFunction((n) => Number(document.getElementById('canvas').dataset.drawn || 0) >= n,
      Math.min(SCREENS, 50), { timeout: 60_000 });
    firstPicture.push(await view.evaluate(() => performance.now()));
    serverPicture.push(await view.evaluate(() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0));
  }

  // Frames: each one pans (or zooms) by a wheel event; the interval between frames is measured.
  const frames = (kind) => view.evaluate(([n, k]) => new Promise((resolve) => {
    const svg = document.getElementById('canvas');
    const r = svg.getBoundingClientRect();
    const out = [];
    let drawn = 0;
    let last = 0;
    let i = 0;
    const step = (t) => {
      if (last) out.push(t - last);
      last = t;
      drawn = Math.max(drawn, Number(svg.dataset.drawn || 0));
      // Back and forth, 30 frames each way: the view ends where it started.
      const dir = Math.floor(i / 30) % 2 ? -1 : 1;
      const init = k === 'zoom'
        ? { deltaY: dir * 4, ctrlKey: true, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 }
        : { deltaX: dir * 23, deltaY: dir * 11 };
      svg.dispatchEvent(new WheelEvent('wheel', { ...init, bubbles: true, cancelable: true }));
      if (++i <= n) requestAnimationFrame(step); else resolve({ out, drawn });
    };
    requestAnimationFrame(step);
  }), [FRAMES, kind]);
  const stats = ({ out: xs, drawn }) => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return { drawn, p50: q(0.5), p95: q(0.95), max: s[s.length - 1], under20: s.filter((x) => x < 20).length / s.length };
  };
  if (process.env.BENCH_SHOTS) await view.screenshot({ path: `${process.env.BENCH_SHOTS}/canvas-all.png` });
  const far = stats(await frames('pan'));
  await view.locator('#canvas').focus();
  await view.keyboard.press('1');
  await view.waitForTimeout(300);
  const farZoom = stats(await frames('zoom'));
  await view.keyboard.press('1');
  await view.waitForTimeout(300);
  // 100 %, in the middle of the workflow.
  await view.keyboard.press('0');
  await view.waitForTimeout(300);
  if (process.env.BENCH_SHOTS) await view.screenshot({ path: `${process.env.BENCH_SHOTS}/canvas-100.png` });
  const near = stats(await frames('pan'));

  const f = (x) => x.toFixed(1);
  const pct = (x) => `${Math.round(x * 100)} %`;
  console.log(`Canvas — ${SCREENS} screens, ${SCREENS * INSTANCES} instances, ${SCREENS - 1} edges `
    + `(${(docBytes / 1048576).toFixed(1)} MiB of Yjs document), headless Chromium ${browser.version()}, ${cpus().length} cores\n`);
  console.log('| | p50 | p95 | max | frames under 20 ms |');
  console.log('|---|---|---|---|---|');
  for (const [name, s] of [[`pan, all in view (up to ${far.drawn} boxes drawn)`, far], [`zoom, all in view (up to ${farZoom.drawn})`, farZoom], [`pan at 100 % (up to ${near.drawn} boxes drawn)`, near]]) {
    console.log(`| ${name} | ${f(s.p50)} ms | ${f(s.p95)} ms | ${f(s.max)} ms | ${pct(s.under20)} |`);
  }
  const ms = (xs) => xs.map((x) => `${Math.round(x)} ms`).join(', ');
  console.log(`\nFirst picture of the whole workflow, the server's (first contentful paint, fresh tab, 3 runs): ${ms(serverPicture)}.`);
  console.log(`The live canvas drawn (navigation to its first frame): ${ms(firstPicture)}.`);
  console.log(`Writing the workflow over the WebSocket (batches of 100 screens): ${f(seedSeconds)} s.`);
  await fresh.close();
  await context.close();
} finally {
  await browser.close();
  server.kill('SIGTERM');
  rmSync(dataRoot, { recursive: true, force: true });
}
