// The canvas benchmark's peer: the same workflow as tests/browser/bench-canvas.mjs (SCREENS boxes
// named "Screen i", an arrow from each to the next) in Excalidraw, measured the same way in the
// same headless Chromium, so that the docs can compare the two from one run on one machine.
//
// measureExcalidraw(browser, { screens, frames }) serves dist/ (node build.mjs) on 127.0.0.1,
// opens it in a fresh 1280 × 900 context, and returns
//   { firstPicture, fcp, scene, far, farZoom, near, outside, browser }
// firstPicture and fcp: ms from navigation, 3 fresh loads (Excalidraw ready with every element
// painted; first contentful paint); scene: ms of that the page spent building the elements;
// far, farZoom, near: { p50, p95, max, under20 } of the frame intervals (stats of ../bench-lib.mjs)
// plus what the view did (boxes in view, zoom range, frames whose view moved); outside: the
// requests that went anywhere but the local server (none).
//
// Run directly: SCREENS=2000 FRAMES=240 CHROMIUM=$(command -v chromium) node bench-peer.mjs
// prints a Markdown table. Needs `npm ci` here and in ../ and ../../yjs (bench-lib's imports).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
// playwright-core is ../node_modules' (not this package's): the same one bench-canvas.mjs uses.
import { chromium } from 'playwright-core';
import { stats } from '../bench-lib.mjs';

const dist = fileURLToPath(new URL('./dist/', import.meta.url));
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.woff2': 'font/woff2' };

/** dist/ over HTTP on 127.0.0.1 at a free port: `{ base, close }`. */
async function serveDist() {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = normalize(join(dist, path === '/' ? 'index.html' : path));
    try {
      if (!file.startsWith(dist)) throw new Error('outside dist');
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] || 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** Frame intervals while each frame pans (or zooms) by one wheel event, as bench-canvas.mjs does. */
const frames = (page, kind, n) => page.evaluate(([n, k]) => new Promise((resolve) => {
  // Excalidraw listens on its container but acts only on wheel events aimed at a canvas: the
  // interactive canvas is the topmost one, where a real wheel would land.
  const canvas = document.querySelector('canvas.excalidraw__canvas.interactive');
  const r = canvas.getBoundingClientRect();
  const out = [];
  const views = [];
  let last = 0;
  let i = 0;
  const step = (t) => {
    if (last) out.push(t - last);
    last = t;
    views.push(window.peer.view());
    // Back and forth, 30 frames each way: the view ends where it started.
    const dir = Math.floor(i / 30) % 2 ? -1 : 1;
    const init = k === 'zoom'
      ? { deltaY: dir * 4, ctrlKey: true, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 }
      : { deltaX: dir * 23, deltaY: dir * 11 };
    canvas.dispatchEvent(new WheelEvent('wheel', { ...init, bubbles: true, cancelable: true }));
    if (++i <= n) requestAnimationFrame(step); else resolve({ out, views });
  };
  requestAnimationFrame(step);
}), [n, kind]);

/** The frame statistics and what the view did: boxes in view, zoom range, frames that moved it. */
const summary = ({ out, views }) => {
  const moved = views.filter((v, i) => i && (v.scrollX !== views[i - 1].scrollX || v.scrollY !== views[i - 1].scrollY
    || v.zoom !== views[i - 1].zoom)).length;
  const zooms = views.map((v) => v.zoom);
  return {
    ...stats(out), boxes: Math.max(...views.map((v) => v.boxes)), moved, frames: out.length,
    zoom: [Math.min(...zooms), Math.max(...zooms)],
  };
};

export async function measureExcalidraw(browser, { screens = 2000, frames: n = 240 } = {}) {
  const { base, close } = await serveDist();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    // Every request the pages make (workers included), to show that none leaves this machine.
    const outside = [];
    context.on('request', (r) => { if (!r.url().startsWith(`${base}/`) && !r.url().startsWith('data:')) outside.push(r.url()); });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    // The first picture, everything in view, from 3 fresh loads.
    const firstPicture = [];
    const fcp = [];
    for (let run = 0; run < 3; run++) {
      await page.goto(`${base}/?screens=${screens}`);
      await page.waitForFunction(() => window.peerReady === true, null, { timeout: 120_000, polling: 100 });
      firstPicture.push(await page.evaluate(() => window.peerTimes.ready));
      fcp.push(await page.evaluate(() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0));
    }
    const scene = await page.evaluate(() => window.peerTimes.scene);
    // Let fonts arrive and the re-render they cause settle before frames are measured.
    await page.evaluate(() => document.fonts.ready);
    await page.waitForTimeout(1000);
    // Excalidraw zooms around the last pointer position (not the wheel event's): the centre.
    await page.mouse.move(640, 450);
    if (process.env.BENCH_SHOTS) await page.screenshot({ path: `${process.env.BENCH_SHOTS}/excalidraw-all.png` });

    const far = summary(await frames(page, 'pan', n));
    const fit = await page.evaluate(() => window.peer.fitAll());
    await page.waitForFunction((z) => window.peer.view().zoom === z, fit);
    await page.waitForTimeout(300);
    const farZoom = summary(await frames(page, 'zoom', n));
    // 100 %, in the middle of the workflow.
    await page.evaluate(() => window.peer.hundred());
    await page.waitForFunction(() => window.peer.view().zoom === 1);
    await page.waitForTimeout(300);
    if (process.env.BENCH_SHOTS) await page.screenshot({ path: `${process.env.BENCH_SHOTS}/excalidraw-100.png` });
    const near = summary(await frames(page, 'pan', n));

    for (const [name, s] of [['far', far], ['farZoom', farZoom], ['near', near]]) {
      if (!s.moved) throw new Error(`Excalidraw did not move its view (${name})`);
    }
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    return { firstPicture, fcp, scene, far, farZoom, near, outside, browser: browser.version() };
  } finally {
    await context.close();
    await close();
  }
}

// Run directly: launch Chromium as bench-lib's startBench does, measure, print Markdown.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const screens = Number(process.env.SCREENS || 2000);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  try {
    const r = await measureExcalidraw(browser, { screens, frames: Number(process.env.FRAMES || 240) });
    const f = (x) => x.toFixed(1);
    const pct = (x) => `${Math.round(x * 100)} %`;
    const zooms = (s) => `zoom ${Math.round(s.zoom[0] * 100)}–${Math.round(s.zoom[1] * 100)} %`;
    console.log(`Excalidraw — ${screens} boxes with labels, ${screens - 1} arrows, headless Chromium ${r.browser}, ${cpus().length} cores\n`);
    console.log('| | p50 | p95 | max | frames under 20 ms |');
    console.log('|---|---|---|---|---|');
    for (const [name, s] of [[`pan, all in view (up to ${r.far.boxes} boxes in view)`, r.far],
      [`zoom, all in view (up to ${r.farZoom.boxes}, ${zooms(r.farZoom)})`, r.farZoom],
      [`pan at 100 % (up to ${r.near.boxes} boxes in view)`, r.near]]) {
      console.log(`| ${name} | ${f(s.p50)} ms | ${f(s.p95)} ms | ${f(s.max)} ms | ${pct(s.under20)} |`);
    }
    const ms = (xs) => xs.map((x) => `${Math.round(x)} ms`).join(', ');
    console.log(`\nFirst picture of the whole scene (navigation to Excalidraw ready, fresh load, 3 runs): ${ms(r.firstPicture)}`
      + ` (of which building the elements in the page: ${Math.round(r.scene)} ms); first contentful paint: ${ms(r.fcp)}.`);
    console.log(`Frames whose view moved: ${r.far.moved}, ${r.farZoom.moved}, ${r.near.moved} of ${r.far.frames}.`);
    console.log(`Requests that left 127.0.0.1: ${r.outside.length ? r.outside.join(', ') : 'none'}.`);
  } finally {
    await browser.close();
  }
}
