// The workflow canvas at scale, in headless Chromium (scripts/bench-canvas): a workflow of
// SCREENS screens (INSTANCES instances each, a text prop set on every one, an edge from each
// screen to the next) is written over the live WebSocket by a stock Yjs client, then a fresh
// browser opens the canvas. Measured: the time to the first picture, and frame times while
// panning — with everything in view (far: boxes and names) and at 100 % (the schematic boxes) —
// and while zooming. Prints Markdown for docs/performance.md.
//
// Environment: ARNO_BIN (a release build), CHROMIUM; SCREENS (2000), INSTANCES (10), FRAMES (300).
import { cpus } from 'node:os';
import {
  Y, startBench, createAdmin, signIn, call as callAs, uuid, widgetSpec, stats as durations, liveWorkflow,
} from './bench-lib.mjs';
import { measureExcalidraw } from './peer/bench-peer.mjs';

const SCREENS = Number(process.env.SCREENS || 2000);
const INSTANCES = Number(process.env.INSTANCES || 10);
const FRAMES = Number(process.env.FRAMES || 240);
const COMPONENTS = 20;

const { base, setupUrl, browser, close } = await startBench('canvas');
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await createAdmin(context, setupUrl, base);

  // A project with COMPONENTS components, each with a text-editable label.
  const call = (method, path, body) => callAs(page, method, path, body);
  const project = await call('POST', '/api/v1/projects', { name: 'Bench' });
  const components = [];
  for (let c = 0; c < COMPONENTS; c++) {
    await call('PUT', `/api/v1/projects/${project.id}/specs/Design_system/Widget${c}.md`, { content: widgetSpec(c), base_version: 0, session_id: 'bench' });
    components.push({ id: uuid(c, 1), label: uuid(c, 2), click: uuid(c, 3) });
  }

  // The workflow, written by a stock Yjs client in batches of 100 screens.
  const { doc, screens, edges, flush, close: closeLive } = await liveWorkflow(page, base, project.id);
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
    await flush();
  }
  const docBytes = Y.encodeStateAsUpdate(doc).length;
  await closeLive();
  const seedSeconds = (Date.now() - written) / 1000;
  if (process.env.BENCH_KEEP) {
    console.log(`KEEP ${base} ${project.slug}`);
    await new Promise((r) => setTimeout(r, Number(process.env.BENCH_KEEP) * 1000));
  }

  // A fresh browser tab (no saved viewport): the first picture, with everything in view.
  const fresh = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const view = await fresh.newPage();
  await signIn(view, base);
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
  const stats = ({ out, drawn }) => ({ drawn, ...durations(out) });
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

  await fresh.close();
  // The peer, in the same browser and run: Excalidraw with the same boxes and arrows (peer/).
  const peer = await measureExcalidraw(browser, { screens: SCREENS, frames: FRAMES });

  const f = (x) => x.toFixed(1);
  const pct = (x) => `${Math.round(x * 100)} %`;
  console.log(`Canvas — ${SCREENS} screens, ${SCREENS * INSTANCES} instances, ${SCREENS - 1} edges `
    + `(${(docBytes / 1048576).toFixed(1)} MiB of Yjs document), headless Chromium ${browser.version()}, ${cpus().length} cores; `
    + `beside it Excalidraw (${SCREENS} labelled boxes, ${SCREENS - 1} arrows)\n`);
  console.log('| | Arno p50 / p95 / max | Arno under 20 ms | Excalidraw p50 / p95 / max | Excalidraw under 20 ms |');
  console.log('|---|---|---|---|---|');
  const cell = (x) => `${f(x.p50)} / ${f(x.p95)} / ${f(x.max)} ms`;
  for (const [name, a, e] of [[`pan, all in view (Arno: up to ${far.drawn} boxes drawn)`, far, peer.far],
    [`zoom, all in view`, farZoom, peer.farZoom],
    [`pan at 100 % (Arno: up to ${near.drawn} boxes drawn)`, near, peer.near]]) {
    console.log(`| ${name} | ${cell(a)} | ${pct(a.under20)} | ${cell(e)} | ${pct(e.under20)} |`);
  }
  const ms = (xs) => xs.map((x) => `${Math.round(x)} ms`).join(', ');
  console.log(`\nFirst picture of the whole workflow, the server's (first contentful paint, fresh tab, 3 runs): ${ms(serverPicture)}.`);
  console.log(`The live canvas drawn (navigation to its first frame): ${ms(firstPicture)}.`);
  console.log(`Excalidraw, the whole scene drawn (navigation to ready, 3 runs): ${ms(peer.firstPicture)}; first contentful paint ${ms(peer.fcp)}.`);
  console.log(`Excalidraw's zoom during the zoom run: ${Math.round(peer.farZoom.zoom[0] * 100)}–${Math.round(peer.farZoom.zoom[1] * 100)} % `
    + `(it stops at 10 % when zooming out); frames whose view moved: ${peer.far.moved}, ${peer.farZoom.moved}, ${peer.near.moved} of ${peer.far.frames}.`);
  console.log(`Writing the workflow over the WebSocket (batches of 100 screens): ${f(seedSeconds)} s.`);
  if (peer.outside.length) throw new Error(`Excalidraw fetched from outside this machine: ${peer.outside.join(', ')}`);
  await context.close();
} finally {
  await close();
}
