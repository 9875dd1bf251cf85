// The component list and the workflow's component choices at scale, in headless Chromium
// (scripts/bench-components): a repository of COMPONENTS component specs (in 40 folders) is
// connected from the appliance's disk, then a fresh tab opens the project page (its first page,
// a search, the last page), a screen's page and the canvas, each RUNS times. Measured per page:
// time to the first byte, first contentful paint, DOM ready, the HTML's size, and on the
// workflow pages the time until the shared component list (one <datalist>) holds every
// component. Prints Markdown for docs/performance.md.
//
// Environment: ARNO_BIN (a release build), CHROMIUM; COMPONENTS (2000), RUNS (5).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Y, startBench, createAdmin, signIn, call, uuid, widgetSpec, liveWorkflow, ms } from './bench-lib.mjs';

const COMPONENTS = Number(process.env.COMPONENTS || 2000);
const RUNS = Number(process.env.RUNS || 5);

let bare = '';
const { base, setupUrl, browser, close } = await startBench('components', (dataRoot) => {
  // The design-system repository, as developers would have committed it.
  const roots = join(dataRoot, 'repos');
  const work = join(dataRoot, 'work');
  mkdirSync(join(work, '.arno'), { recursive: true });
  writeFileSync(join(work, '.arno/config.json'), '{"version": 1}\n');
  for (let g = 0; g < 40; g++) mkdirSync(join(work, `Design_system/group${g}`), { recursive: true });
  for (let i = 0; i < COMPONENTS; i++) writeFileSync(join(work, `Design_system/group${i % 40}/Widget${i}.md`), widgetSpec(i));
  const git = (...args) => execFileSync('git', args, {
    cwd: work,
    env: { ...process.env, GIT_AUTHOR_NAME: 'Dev', GIT_AUTHOR_EMAIL: 'dev@example.com', GIT_COMMITTER_NAME: 'Dev',
      GIT_COMMITTER_EMAIL: 'dev@example.com', GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
  });
  git('init', '-q', '-b', 'main');
  git('add', '.');
  git('commit', '-q', '-m', 'The design system');
  mkdirSync(roots);
  bare = join(roots, 'design-system.git');
  git('clone', '-q', '--bare', work, bare);
  return { ARNO_GIT_LOCAL_ROOTS: roots };
});
try {
  const adminContext = await browser.newContext();
  const admin = await createAdmin(adminContext, setupUrl, base);
  const started = Date.now();
  const project = await call(admin, 'POST', '/api/v1/projects', { name: 'Big', repository: { provider: 'local', path: bare } });
  const scanSeconds = (Date.now() - started) / 1000;

  // One screen: a root instance and ten inside it.
  const live = await liveWorkflow(admin, base, project.id);
  live.doc.transact(() => {
    const s = new Y.Map();
    live.screens.set('screen-0', s);
    s.set('id', 'screen-0');
    s.set('name', 'Landing');
    s.set('presentation', 'page');
    s.set('x', 0);
    s.set('y', 0);
    const inst = (n) => {
      const m = new Y.Map();
      m.set('id', `i${n}`);
      m.set('component_id', uuid(n, 1));
      m.set('props', new Y.Map());
      m.set('children', new Y.Array());
      return m;
    };
    const root = inst(0);
    s.set('root', root);
    root.get('children').push(Array.from({ length: 10 }, (_, n) => inst(n + 1)));
  });
  await live.close();

  // A fresh tab, signed in; each page RUNS times (the first with cold caches).
  const tabContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const tab = await tabContext.newPage();
  await signIn(tab, base);
  const measure = async (path, ready) => {
    const runs = [];
    for (let r = 0; r < RUNS; r++) {
      await tab.goto(`${base}${path}`);
      let readyAt = null;
      if (ready) {
        await tab.waitForFunction(ready, COMPONENTS, { timeout: 60_000 });
        readyAt = await tab.evaluate(() => performance.now());
      }
      runs.push({ ...await tab.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return { ttfb: n.responseStart - n.startTime, fcp: fcp ? fcp.startTime : NaN, dom: n.domContentLoadedEventEnd - n.startTime, bytes: n.decodedBodySize };
      }), ready: readyAt });
    }
    return runs;
  };
  const choices = (n) => document.querySelectorAll('#component-choices option').length >= n;
  const pages = [
    [`project page, first 100 of ${COMPONENTS}`, await measure(`/projects/${project.slug}`)],
    ['project page, a search (“widget 1999”)', await measure(`/projects/${project.slug}?q=widget+1999`)],
    ['project page, the last page', await measure(`/projects/${project.slug}?page=${Math.ceil(COMPONENTS / 100)}`)],
    ['screen page (one screen, 11 instances)', await measure(`/projects/${project.slug}/workflow/screens/screen-0`, choices)],
    ['canvas (one screen)', await measure(`/projects/${project.slug}/workflow`, choices)],
  ];
  // The list is complete: every component is a choice, and the project page counts them all.
  await tab.goto(`${base}/projects/${project.slug}`);
  const caption = await tab.locator('caption').first().textContent();
  if (!caption.includes(String(COMPONENTS).replace(/\B(?=(\d{3})+(?!\d))/g, ',')) && !caption.includes(String(COMPONENTS))) {
    throw new Error(`the project page does not count ${COMPONENTS} components: ${caption}`);
  }

  const median = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  const range = (xs) => { const s = xs.filter((x) => Number.isFinite(x)); return `${ms(median(s))} (${ms(Math.min(...s))}–${ms(Math.max(...s))})`; };
  console.log(`Components — ${COMPONENTS} specs, headless Chromium ${browser.version()}, ${cpus().length} cores, median of ${RUNS} navigations (range)\n`);
  console.log('| page | first byte | first contentful paint | DOM ready | every component a choice | HTML |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, runs] of pages) {
    const pick = (k) => runs.map((x) => x[k]);
    const ready = runs[0].ready === null ? '—' : range(pick('ready'));
    console.log(`| ${name} | ${range(pick('ttfb'))} | ${range(pick('fcp'))} | ${range(pick('dom'))} | ${ready} | ${(median(pick('bytes')) / 1024).toFixed(0)} KiB |`);
  }
  await tabContext.close();
  await adminContext.close();
  console.log(`\nConnecting the repository (first scan of ${COMPONENTS} specs, inside the create call): ${scanSeconds.toFixed(2)} s.`);
} finally {
  await close();
}
