// Arno's pages in real headless Chromium: WCAG 2.1 AA (axe-core), keyboard-only use, visible
// focus, no Content-Security-Policy violations and no request to any other origin.
//
// Run by scripts/test after the Rust suite: `ARNO_BIN=… node --test` in tests/browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const BIN = process.env.ARNO_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
assert.ok(BIN, 'set ARNO_BIN to the arno binary');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let server, base, setupUrl, browser, dataRoot, repoPath, barePath, serverEnv;
const logLines = [];

before(async () => {
  dataRoot = mkdtempSync(join(tmpdir(), 'arno-ui-'));
  // A design-system repository an Admin connects from the appliance's disk.
  const roots = join(dataRoot, 'repos');
  repoPath = join(roots, 'design-system');
  mkdirSync(join(repoPath, 'Design_system'), { recursive: true });
  mkdirSync(join(repoPath, '.arno'), { recursive: true });
  writeFileSync(join(repoPath, '.arno/config.json'), '{"version": 1}\n');
  writeFileSync(join(repoPath, 'Design_system/Button.md'), [
    '---', 'id: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01', 'name: Button', 'status: stable', '---',
    '# Button', '', 'The **primary** action. See [the guide](https://design.example.com/guide).', '',
    '<!-- arno:props v1 -->', '| id | name | type | default | textEditable |', '|---|---|---|---|---|',
    '| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | "Buy" | true |', '<!-- /arno:props -->', '',
    '<!-- arno:events v1 -->', '| id | name | payload |', '|---|---|---|',
    '| 7a000000-0000-4000-8000-000000000001 | onClick | MouseEvent |', '<!-- /arno:events -->', ''].join('\n'));
  writeFileSync(join(repoPath, 'Design_system/Broken.md'), '# no frontmatter\n');
  const git = (...args) => execFileSync('git', ['-C', repoPath, ...args], {
    env: { ...process.env, GIT_AUTHOR_NAME: 'Dev', GIT_AUTHOR_EMAIL: 'dev@example.com', GIT_COMMITTER_NAME: 'Dev',
      GIT_COMMITTER_EMAIL: 'dev@example.com', GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
  });
  git('init', '-q', '-b', 'main');
  git('add', '.');
  git('commit', '-q', '-m', 'Add button');
  // Arno serves a bare clone (as a git server would), so change requests can be merged into main.
  barePath = join(roots, 'design-system.git');
  git('clone', '-q', '--bare', repoPath, barePath);
  const [port, metricsPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARNO_')));
  Object.assign(env, {
    ARNO_CONFIG: '',
    ARNO_DATA_DIR: join(dataRoot, 'data'),
    ARNO_LISTEN: `127.0.0.1:${port}`,
    ARNO_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
    ARNO_GIT_LOCAL_ROOTS: roots,
    ARNO_WRITEBACK_DEBOUNCE_SECS: '1',
  });
  serverEnv = env;
  server = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  setupUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no setup URL in the log')), 60_000);
    let buf = '';
    server.stdout.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logLines.push(line);
        const m = line.match(/(http:\/\/\S+\/setup\?token=[A-Za-z0-9_-]+)/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      }
    });
    server.once('exit', (code) => reject(new Error(`arno exited with ${code}`)));
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  rmSync(dataRoot, { recursive: true, force: true });
});

/** Sign in as the admin the first test created (or as `email`, same password). */
async function signIn(page, email = 'ada@example.com') {
  await page.goto(`${base}/login`);
  await page.getByLabel('E-mail address').fill(email);
  await page.getByLabel('Password').fill('correct horse battery staple');
  await page.getByLabel('Password').press('Enter');
  await page.waitForURL(`${base}/`);
}

/** A page that records CSP violations, console errors and requests leaving the origin. */
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    // Chromium logs every intentional 4xx document (wrong password, 404 page) as an error.
    const expected4xx = /^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text());
    if (m.type() === 'error' && !expected4xx) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(base) && !url.startsWith('data:')) problems.push(`request to another origin: ${url}`);
  });
  return { page, problems, context };
}

async function axeCheck(page, label) {
  // ARNO_SCREENSHOTS=DIR keeps a picture of every checked state, to look at (never asserted on).
  if (process.env.ARNO_SCREENSHOTS) {
    const name = label.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    await page.screenshot({ path: `${process.env.ARNO_SCREENSHOTS}/${name}.png`, fullPage: true });
  }
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  const violations = result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(violations, [], `${label}: accessibility violations`);
  assert.ok(result.passes.length > 10, `${label}: axe actually ran`);
}

/** Wait for the editor's autosave status to match `re`; on timeout, say what it said. */
async function waitForStatus(page, re) {
  for (let i = 0; i < 100; i++) {
    if (re.test(await page.locator('#autosave-status').textContent())) return;
    await page.waitForTimeout(100);
  }
  assert.match(await page.locator('#autosave-status').textContent(), re);
}

/** The focused element's visible focus indicator. */
async function focusIndicator(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    return { tag: el.tagName, text: el.textContent.trim(), outline: s.outlineStyle, width: parseFloat(s.outlineWidth) };
  });
}

test('setup, home, sign-out, sign-in and error pages are accessible and usable by keyboard', async () => {
  const { page, problems, context } = await newPage();

  // Setup page.
  await page.goto(setupUrl);
  assert.equal(await page.title(), 'Set up Arno · Arno');
  await axeCheck(page, 'setup');
  await page.getByLabel('E-mail address').fill('ada@example.com');
  await page.getByLabel('Full name').fill('Ada Lovelace');
  await page.getByLabel('Password').fill('short');
  await page.getByRole('button', { name: 'Create administrator' }).click();
  // A rejected form keeps what was typed and announces the error.
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').textContent(), /at least 12/);
  assert.equal(await page.getByLabel('E-mail address').inputValue(), 'ada@example.com');
  await axeCheck(page, 'setup with error');
  await page.getByLabel('Password').fill('correct horse battery staple');
  await page.getByRole('button', { name: 'Create administrator' }).click();
  await page.waitForURL(`${base}/`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Welcome, Ada Lovelace');
  await axeCheck(page, 'home');

  // Sign out with the keyboard: Tab reaches the skip link first, with a visible focus ring.
  await page.keyboard.press('Tab');
  let focus = await focusIndicator(page);
  assert.equal(focus.text, 'Skip to main content');
  assert.notEqual(focus.outline, 'none');
  assert.ok(focus.width >= 2, 'focus ring is at least 2px');
  const signOut = page.getByRole('button', { name: 'Sign out' });
  await signOut.focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/login`);
  await axeCheck(page, 'login');

  // Wrong password: one generic, announced message.
  await page.getByLabel('E-mail address').fill('ada@example.com');
  await page.getByLabel('Password').fill('wrong password here');
  await page.getByLabel('Password').press('Enter');
  await page.getByRole('alert').waitFor();
  assert.equal((await page.getByRole('alert').textContent()).trim(), 'Incorrect e-mail address or password.');
  assert.equal(await page.getByLabel('Password').getAttribute('aria-invalid'), 'true');
  await axeCheck(page, 'login with error');

  // Sign in using only the keyboard.
  await page.getByLabel('E-mail address').focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.type('ada@example.com');
  await page.keyboard.press('Tab');
  focus = await focusIndicator(page);
  assert.equal(focus.tag, 'INPUT');
  await page.keyboard.type('correct horse battery staple');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/`);

  // The Audit page: filters, records, live verification — accessible too.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.waitForURL(`${base}/audit`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Audit log');
  assert.ok(await page.locator('table.audit tbody tr').count() >= 3, 'setup, sign-in and sign-out are recorded');
  await axeCheck(page, 'audit');
  await page.getByLabel('Outcome').selectOption('denied');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/outcome=denied/);
  assert.match(await page.locator('table.audit tbody').textContent(), /auth\.login/);
  await page.getByRole('button', { name: 'Verify the audit log' }).click();
  await page.locator('#verification').waitFor();
  assert.match(await page.locator('#verification').textContent(), /The audit log is intact/);
  await axeCheck(page, 'audit after verification');

  // Error pages.
  await page.goto(`${base}/no-such-page`);
  assert.match(await page.getByRole('heading', { level: 1 }).textContent(), /404/);
  await axeCheck(page, '404 page');
  await page.goto(setupUrl);
  assert.match(await page.getByRole('heading', { level: 1 }).textContent(), /403/);
  await axeCheck(page, '403 page');

  assert.deepEqual(problems, [], 'no CSP violations, script errors or third-party requests');
  await context.close();
});

test('a cross-site form post is refused by the browser-facing checks', async () => {
  const { page, context } = await newPage();
  await page.goto(`${base}/login`);
  // Submit the sign-in form as if from another site: the browser sends Origin/Sec-Fetch-Site.
  const status = await page.evaluate(async (target) => {
    const r = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'email=a%40b.c&password=x',
    });
    return r.status;
  }, `${base}/login`);
  // Same-origin fetch without the CSRF token: refused.
  assert.equal(status, 403);
  await context.close();
});

test('projects: create, components, component page and members are accessible', async () => {
  const { page, problems, context } = await newPage();
  await signIn(page);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Projects' }).click();
  await page.waitForURL(`${base}/projects`);
  await axeCheck(page, 'projects (empty)');
  await page.getByLabel('Name', { exact: true }).fill('Design system');
  await page.getByLabel(/Existing repository/).fill(barePath);
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(`${base}/projects/design-system`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Design system');
  assert.match(await page.locator('#components').textContent(), /Button/);
  assert.match(await page.locator('#components').textContent(), /missing frontmatter/);
  await axeCheck(page, 'project');

  await page.getByRole('button', { name: 'Scan now' }).click();
  await page.locator('#scan-report').waitFor();
  assert.match(await page.locator('#scan-report').textContent(), /0 spec\(s\) read/);
  await axeCheck(page, 'project after scan');

  await page.getByRole('link', { name: 'Button' }).click();
  await page.waitForURL(/\/projects\/design-system\/components\//);
  assert.equal(await page.locator('#props tbody th').textContent(), 'label');
  assert.equal(await page.locator('#description strong').textContent(), 'primary');
  await axeCheck(page, 'component');

  await page.goto(`${base}/projects/design-system/members`);
  await axeCheck(page, 'members');
  await page.getByLabel('E-mail address').fill('nobody@example.com');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#members-error').waitFor();
  await axeCheck(page, 'members with error');

  // A taken URL name: the form keeps what was typed and announces the error.
  await page.goto(`${base}/projects`);
  await page.getByLabel('Name', { exact: true }).fill('Design system');
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').textContent(), /taken/);
  assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'Design system');
  await axeCheck(page, 'projects with error');

  assert.deepEqual(problems, [], 'no CSP violations, script errors or third-party requests');
  await context.close();
});

test('a Maker creates a component with the keyboard and lands in its editor', async () => {
  const { page, problems, context } = await newPage();
  await signIn(page);
  await page.goto(`${base}/projects/design-system`);
  const form = page.locator('#new-component');
  await form.waitFor();
  await axeCheck(page, 'project with the new component form');

  // Keyboard only: type, Tab from field to field, Enter on the button.
  await page.locator('#component-name').focus();
  await page.keyboard.type('Date picker');
  await page.keyboard.press('Tab');
  await page.keyboard.type('forms');
  await page.keyboard.press('Tab');
  await page.keyboard.type('Pick a **date**.');
  await page.keyboard.press('Tab');
  const focused = await focusIndicator(page);
  assert.equal(focused.text, 'Create component');
  assert.ok(focused.outline !== 'none' && focused.width >= 2, 'the button shows where focus is');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/projects/design-system/edit/Design_system/forms/DatePicker.md`);
  // It opens in the structured view: the description as Markdown, no props yet.
  assert.equal(await page.locator('#prose-0').inputValue(), '# Date picker\n\nPick a **date**.');
  assert.match(await page.locator('#props-editor').textContent(), /No props yet\./);
  await axeCheck(page, 'structured editor of a new component');
  // Add a text-editable prop with the keyboard: the new row's name has the focus.
  await page.locator('#add-prop').focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#prop-0-name');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'prop-0-name');
  await page.keyboard.type('label');
  await page.keyboard.press('Tab'); // its type: Text (the list and free-type fields are hidden)
  assert.equal(await page.evaluate(() => document.activeElement.id), 'prop-0-kind');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'prop-0-default');
  await page.keyboard.type('"Pick"');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'prop-0-editable');
  await page.keyboard.press('Space');
  await axeCheck(page, 'structured editor with a new prop row');
  await page.locator('#save').focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#editor-message');
  assert.match(await page.locator('#editor-message').textContent(), /Saved as version 2\./);
  assert.match(await page.locator('#preview-props').textContent(), /label/);
  // Structured edits autosave: a description typed, then an event added with its new id kept.
  await page.locator('#prop-0-description').fill('The visible text');
  await waitForStatus(page, /Saved automatically as version 3\./);
  assert.match(await page.locator('#preview-props').textContent(), /The visible text/);
  await page.locator('#prop-0-default').fill('"Pick one"');
  await waitForStatus(page, /Saved automatically as version 4\./);
  await page.goto(`${base}/projects/design-system/edit/Design_system/forms/DatePicker.md?view=source`);
  const source = await page.locator('#content').inputValue();
  assert.match(source, /^---\nid: [0-9a-f-]{36}\nname: "Date picker"\n/);
  assert.match(source, /Pick a \*\*date\*\*\./);
  assert.match(source, /\| [0-9a-f-]{36} \| label \| string \| "Pick one" \| true \| The visible text \|\n/);
  assert.equal(source.match(/\| label \|/g).length, 1, 'autosaves edited the row, never added it again');
  await axeCheck(page, 'source view of a new component');

  // The same name again: refused, announced, the field marked and what was typed kept.
  await page.goto(`${base}/projects/design-system`);
  await page.locator('#component-name').fill('Date picker');
  await page.locator('#component-folder').fill('forms');
  await page.locator('#component-name').press('Enter');
  await page.locator('#new-component-error').waitFor();
  assert.match(await page.locator('#new-component-error').textContent(), /exists/);
  assert.equal(await page.locator('#component-name').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#component-name').inputValue(), 'Date picker');
  await axeCheck(page, 'new component refused');

  assert.deepEqual(problems, [], 'no CSP violations, script errors or third-party requests');
  await context.close();
});

test('admin console, profile and device pages are accessible', async () => {
  const { page, problems, context } = await newPage();
  await signIn(page);

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).click();
  await page.waitForURL(`${base}/admin`);
  await axeCheck(page, 'admin');
  await page.getByRole('button', { name: /Generate/ }).click();
  await page.locator('#scim-token').waitFor();
  await axeCheck(page, 'admin with a new SCIM token');

  await page.getByRole('link', { name: 'Users' }).first().click();
  await page.waitForURL(`${base}/admin/users`);
  await axeCheck(page, 'users');
  await page.getByLabel('Search by name, e-mail or handle').fill('ada');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('#users tbody a').first().click();
  await page.waitForURL(/\/admin\/users\/[0-9a-f-]+$/);
  await axeCheck(page, 'user');

  await page.goto(`${base}/profile`);
  await page.getByLabel('What it is for').fill('laptop');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('#new-token').waitFor();
  assert.match(await page.locator('#new-token').textContent(), /^arno_/);
  await axeCheck(page, 'profile');

  await page.goto(`${base}/device`);
  await axeCheck(page, 'device');
  await page.getByLabel(/Code shown by/).fill('BCDF-GHJK');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.locator('#device-error').waitFor();
  await axeCheck(page, 'device with error');

  assert.deepEqual(problems, [], 'no CSP violations, script errors or third-party requests');
  await context.close();
});

test('two tabs edit one spec: the second gets the conflict view, merges, and nothing is lost', async () => {
  const context = await browser.newContext();
  const problems = [];
  const login = await context.newPage();
  await signIn(login);
  const url = `${base}/projects/design-system/edit/Design_system/Button.md?view=source`;
  const [tabA, tabB] = [await context.newPage(), await context.newPage()];
  for (const tab of [tabA, tabB]) {
    tab.on('pageerror', (e) => problems.push(e.message));
    await tab.goto(url);
  }
  const original = readFileSync(join(repoPath, 'Design_system/Button.md'), 'utf8');
  assert.equal(await tabA.locator('#content').inputValue(), original, 'the textarea holds the file exactly');
  await axeCheck(tabA, 'editor');

  // Tab A saves first, using only the keyboard.
  await tabA.locator('#content').focus();
  await tabA.keyboard.press('Control+End');
  await tabA.keyboard.type('Line from tab A.\n');
  await tabA.getByRole('button', { name: 'Save' }).focus();
  await tabA.keyboard.press('Enter');
  await tabA.locator('#editor-message').waitFor();
  assert.match(await tabA.locator('#editor-message').textContent(), /Saved as version \d+/);

  // Tab B saves from the old version: the conflict is announced, both texts are on the page.
  await tabB.locator('#content').fill(original + 'Line from tab B.\n');
  await tabB.getByRole('button', { name: 'Save' }).click();
  await tabB.getByRole('alert').first().waitFor();
  assert.match(await tabB.locator('#conflict-title').textContent(), /saved version/);
  assert.match(await tabB.locator('#theirs').inputValue(), /Line from tab A\./);
  assert.match(await tabB.locator('#content').inputValue(), /Line from tab B\./);
  await axeCheck(tabB, 'editor conflict');

  // Merge by hand and save.
  await tabB.locator('#content').fill(original + 'Line from tab A.\nLine from tab B.\n');
  await tabB.getByRole('button', { name: 'Save my text as the new version' }).click();
  await tabB.locator('#editor-message').waitFor();

  const fresh = await context.newPage();
  await fresh.goto(url);
  const saved = await fresh.locator('#content').inputValue();
  assert.ok(saved.includes('Line from tab A.') && saved.includes('Line from tab B.'), saved);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the editor autosaves, hears other saves live, and hands a conflict to the conflict view', async () => {
  const context = await browser.newContext();
  const login = await context.newPage();
  await signIn(login);
  const url = `${base}/projects/design-system/edit/Design_system/Button.md?view=source`;
  const [writer, watcher] = [await context.newPage(), await context.newPage()];
  const problems = [];
  for (const tab of [writer, watcher]) {
    tab.on('pageerror', (e) => problems.push(e.message));
    // Chromium logs the expected 409 of the conflicting autosave as a failed resource.
    tab.on('console', (m) => {
      if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(m.text());
    });
    await tab.goto(url);
  }
  const before = await writer.locator('#content').inputValue();

  // Typing, then a pause: saved without pressing anything; the watcher hears of it.
  await writer.locator('#content').focus();
  await writer.keyboard.press('Control+End');
  await writer.keyboard.type('Autosaved line.\n');
  await writer.locator('#autosave-status').filter({ hasText: /Saved automatically as version \d+/ }).waitFor({ timeout: 10_000 });
  await watcher.locator('#autosave-status').filter({ hasText: /Updated by Ada Lovelace/ }).waitFor({ timeout: 10_000 });
  // The writer's preview follows the saved text.
  await writer.locator('#preview').filter({ hasText: 'Autosaved line.' }).waitFor({ timeout: 10_000 });
  assert.equal(await watcher.locator('#content').inputValue(), before, 'the watcher\'s text is untouched');

  // The watcher now types on its stale base: its autosave meets the conflict and shows both texts.
  await watcher.locator('#content').focus();
  await watcher.keyboard.press('Control+End');
  await watcher.keyboard.type('Watcher line.\n');
  await watcher.locator('#conflict-title').waitFor({ timeout: 10_000 });
  assert.match(await watcher.locator('#content').inputValue(), /Watcher line\./);
  assert.match(await watcher.locator('#theirs').inputValue(), /Autosaved line\./);

  const fresh = await context.newPage();
  await fresh.goto(url);
  assert.match(await fresh.locator('#content').inputValue(), /Autosaved line\./);
  assert.deepEqual(problems, []);
  await context.close();
});

test('saved specs reach a change request that a Maker merges with the keyboard', async () => {
  const { page, problems, context } = await newPage();
  await signIn(page);

  // The saves of the earlier tests were committed to arno/ada after the quiet period.
  const deadline = Date.now() + 20_000;
  for (;;) {
    await page.goto(`${base}/projects/design-system/changes`);
    const row = await page.locator('#branches').textContent().catch(() => '');
    if (/arno\/ada/.test(row) && /committed/.test(row) && !/waiting/.test(row)) break;
    assert.ok(Date.now() < deadline, `arno/ada was not committed: ${row}`);
    await page.waitForTimeout(300);
  }
  assert.match(await page.locator('#activity').textContent(), /committed Design_system\/Button\.md/);
  await axeCheck(page, 'changes');

  await page.getByRole('link', { name: 'arno/ada' }).click();
  await page.waitForURL(`${base}/projects/design-system/changes/ada`);
  assert.equal((await page.locator('#review').textContent()).trim(), 'open');
  assert.match(await page.locator('#files').textContent(), /Design_system\/Button\.md/);
  await axeCheck(page, 'change request');

  // Merge commit (the default choice), using only the keyboard.
  await page.getByRole('button', { name: 'Merge', exact: true }).focus();
  await page.keyboard.press('Enter');
  await page.waitForLoadState('load');
  await page.locator('#review').filter({ hasText: 'merged' }).waitFor({ timeout: 10_000 });
  const git = (...args) => execFileSync('git', ['-C', barePath, ...args]).toString().trim();
  assert.equal(git('log', '-1', '--format=%P', 'main').split(' ').length, 2, 'a merge commit on main');
  assert.match(git('show', 'main:Design_system/Button.md'), /Line from tab A\./);

  // The project page lists the merge; the editor says where saves go.
  await page.goto(`${base}/projects/design-system`);
  assert.match(await page.locator('#activity').textContent(), /merged arno\/ada into main/);
  await page.goto(`${base}/projects/design-system/edit/Design_system/Button.md`);
  assert.match(await page.locator('#writeback-status').textContent(), /arno\/ada/);
  await axeCheck(page, 'editor with write-back status');
  assert.deepEqual(problems, []);
  await context.close();
});

test('two browsers share the workflow live: canvas, screen pages, nested instances, an edge and presence', async () => {
  const one = await newPage();
  const two = await newPage();
  for (const b of [one, two]) {
    await signIn(b.page);
    await b.page.goto(`${base}/projects/design-system/workflow`);
    await b.page.locator('#workflow[data-synced="true"]').waitFor({ timeout: 15_000 });
  }
  // Presence: each browser lists both.
  for (const b of [one, two]) await b.page.locator('#presence li').nth(1).waitFor({ timeout: 10_000 });
  await axeCheck(one.page, 'workflow canvas');

  // One adds two screens (keyboard: type, Enter) and connects them.
  for (const name of ['Home', 'Checkout']) {
    await one.page.locator('#screen-name').fill(name);
    await one.page.locator('#screen-name').press('Enter');
    await one.page.locator('svg#canvas .screen', { hasText: name }).waitFor();
  }
  // Enter on a screen opens its own page, where it is edited ("edit FROM the screen").
  await one.page.locator('svg#canvas .screen', { hasText: 'Home' }).focus();
  await one.page.keyboard.press('Enter');
  await one.page.waitForURL(/\/workflow\/screens\//);
  await one.page.locator('#screen-page[data-synced="true"]').waitFor({ timeout: 15_000 });
  const homeUrl = one.page.url();
  assert.equal(await one.page.locator('#screen-title').textContent(), 'Home');
  await one.page.locator('#instances h3', { hasText: 'Button (root)' }).waitFor();
  // Connect the root's onClick to Checkout.
  await one.page.getByLabel('When onClick, go to').selectOption({ label: 'Checkout' });
  await one.page.getByRole('button', { name: 'Connect onClick' }).click();
  await one.page.locator('#instances li', { hasText: '→ Checkout' }).first().waitFor();
  // Set the label (Makers edit props here), and nest instances two levels deep.
  await one.page.getByLabel('label (text)').fill('Buy now');
  await one.page.getByLabel('label (text)').press('Enter');
  await one.page.getByLabel('Place inside Button').fill('Button');
  await one.page.getByRole('button', { name: 'Place' }).click();
  await one.page.locator('#instances ul.instance-tree div.instance').first().waitFor();
  await one.page.locator('#instances ul.instance-tree div.instance').getByLabel('Place inside Button').fill('Button');
  await one.page.locator('#instances ul.instance-tree div.instance').getByRole('button', { name: 'Place' }).click();
  await one.page.locator('#instances ul.instance-tree ul.instance-tree div.instance').waitFor();
  assert.equal(await one.page.locator('#instances div.instance').count(), 3);
  await axeCheck(one.page, 'workflow screen page');

  // The other browser sees the edge on the canvas, and where the first person is.
  // (a horizontal line has no height, so it is "attached" rather than "visible" to Playwright)
  await two.page.locator('svg#canvas line.edge').waitFor({ state: 'attached', timeout: 10_000 });
  assert.match(await two.page.locator('svg#canvas .screen', { hasText: 'Home' }).getAttribute('aria-label'), /1 outgoing edge/);
  await two.page.locator('#presence li', { hasText: 'on Home' }).waitFor({ timeout: 10_000 });

  // Esc returns to the canvas with that screen focused.
  await one.page.locator('#screen-title').focus();
  await one.page.keyboard.press('Escape');
  await one.page.waitForURL(/\/workflow#screen=/);
  await one.page.locator('#workflow[data-synced="true"]').waitFor({ timeout: 15_000 });
  await one.page.waitForFunction(() => (document.activeElement.getAttribute('aria-label') || '').startsWith('Screen Home'));
  assert.equal(await one.page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Screen Home, 1 outgoing edge');

  // The second browser opens Home from the list of screens (a link) and sees it all, nested.
  await two.page.locator('#screen-list a', { hasText: 'Home' }).click();
  await two.page.locator('#screen-page[data-synced="true"]').waitFor({ timeout: 15_000 });
  await two.page.locator('#instances ul.instance-tree ul.instance-tree div.instance').waitFor();
  assert.equal(await two.page.getByLabel('label (text)').first().inputValue(), 'Buy now');
  await two.page.locator('#presence li', { hasText: 'on this screen' }).waitFor();

  // The killer feature: a spec change re-renders open screens and canvases at once, and instances
  // that set a prop the component no longer has are flagged, not silently cleaned.
  await one.page.evaluate(async () => {
    const url = '/api/v1/projects/design-system/specs/Design_system/Button.md';
    const csrf = document.querySelector('input[name=csrf_token]').value;
    const spec = await (await fetch(url)).json();
    const content = spec.content.split('\n').filter((l) => !l.startsWith('| 6f1c7d2e-1111-4a2b-8c3d-000000000001')).join('\n');
    const r = await fetch(url, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ content, base_version: spec.version, session_id: 'canvas-test' }),
    });
    if (!r.ok) throw new Error(`save: ${r.status} ${await r.text()}`);
  });
  const started = Date.now();
  await one.page.locator('svg#canvas .screen.stale', { hasText: 'Home' }).waitFor({ timeout: 5_000 });
  await two.page.locator('#screen-missing', { hasText: '6f1c7d2e-1111-4a2b-8c3d-000000000001' }).waitFor({ timeout: 5_000 });
  assert.ok(Date.now() - started < 3_000, 'open pages re-rendered within a few seconds of the save');
  assert.match(await one.page.locator('svg#canvas .screen', { hasText: 'Home' }).getAttribute('aria-label'), /props its component no longer has/);
  assert.equal(await two.page.getByLabel('label (text)').count(), 0, 'the removed prop is no longer offered');
  await two.page.keyboard.press('Escape');
  await two.page.locator('#workflow[data-synced="true"]').waitFor({ timeout: 15_000 });
  assert.ok(homeUrl.includes('/workflow/screens/'));

  // History: save a version, change something, compare, restore (a new change everyone gets).
  await one.page.locator('#version-label').fill('Two screens');
  await one.page.locator('#version-label').press('Enter');
  await one.page.locator('#history-result', { hasText: 'Saved version Two screens.' }).waitFor();
  await one.page.locator('#screen-name').fill('Extra');
  await one.page.locator('#screen-name').press('Enter');
  await two.page.locator('svg#canvas .screen', { hasText: 'Extra' }).waitFor({ timeout: 10_000 });
  await one.page.getByRole('button', { name: 'Compare Two screens with now' }).click();
  await one.page.locator('#history-result', { hasText: 'screens: 1 added' }).waitFor();
  await one.page.getByRole('button', { name: 'Restore Two screens' }).click();
  await one.page.locator('#history-result', { hasText: 'Restored Two screens' }).waitFor();
  await two.page.locator('svg#canvas .screen', { hasText: 'Extra' }).waitFor({ state: 'detached', timeout: 10_000 });
  await axeCheck(one.page, 'workflow canvas with history');

  // What was shared is durable: a third browser gets it from the server.
  const three = await newPage();
  await signIn(three.page);
  await three.page.goto(`${base}/projects/design-system/workflow`);
  await three.page.locator('svg#canvas .screen', { hasText: 'Checkout' }).waitFor({ timeout: 10_000 });
  for (const b of [one, two, three]) {
    assert.deepEqual(b.problems, []);
    await b.context.close();
  }
});

test('the canvas pans, zooms, selects and moves several screens, and keeps its view across a reload', async () => {
  const b = await newPage();
  await signIn(b.page);
  const { page } = b;
  await page.goto(`${base}/projects/design-system/workflow`);
  await page.locator('#workflow[data-synced="true"]').waitFor({ timeout: 15_000 });
  await page.locator('svg#canvas .screen', { hasText: 'Checkout' }).waitFor();
  const transform = () => page.locator('svg#canvas g.viewport').getAttribute('transform');
  const zoom = () => page.locator('#zoom-level').textContent();

  // Schematic boxes: the component tree of each screen, edges labelled with their event.
  assert.match(await page.locator('svg#canvas .screen', { hasText: 'Checkout' }).textContent(), /Button/);
  assert.equal(await page.locator('svg#canvas text.edge-label').first().textContent(), 'onClick');

  // The keyboard alone: the canvas pans with the arrows and zooms with + - 0 1.
  await page.locator('svg#canvas').focus();
  await page.keyboard.press('0');
  assert.equal(await zoom(), '100 %');
  const before = await transform();
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction((t) => document.querySelector('svg#canvas g.viewport').getAttribute('transform') !== t, before);
  await page.keyboard.press('+');
  await page.waitForFunction(() => document.getElementById('zoom-level').textContent === '125 %');
  await page.keyboard.press('-');
  await page.keyboard.press('1');
  await page.locator('#workflow-status', { hasText: /Showing all \d+ screens/ }).waitFor();
  // The buttons do the same.
  await page.getByRole('button', { name: 'Zoom in' }).click();
  await page.waitForFunction(() => document.getElementById('zoom-level').textContent !== '100 %');

  // Enter goes to a screen; Ctrl+A selects all; Shift+arrow moves them together.
  await page.locator('svg#canvas').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => (document.activeElement.getAttribute('aria-label') || '').startsWith('Screen'));
  await page.keyboard.press('Control+a');
  await page.locator('#workflow-status', { hasText: '2 screens selected.' }).waitFor();
  const ys = () => page.$$eval('svg#canvas .screen', (gs) => Object.fromEntries(gs.map((g) => [g.dataset.id, Number(g.getAttribute('transform').match(/,(-?[\d.]+)\)/)[1])])));
  const y0 = await ys();
  await page.keyboard.press('Shift+ArrowDown');
  await page.waitForFunction((was) => [...document.querySelectorAll('svg#canvas .screen')].every((g) => Number(g.getAttribute('transform').match(/,(-?[\d.]+)\)/)[1]) === was[g.dataset.id] + 20), y0);
  assert.equal(await page.locator('svg#canvas .screen[aria-pressed="true"]').count(), 2);
  await axeCheck(page, 'workflow canvas zoomed with two screens selected');

  // The view and the selection survive a reload.
  const kept = await zoom();
  await page.reload();
  await page.locator('#workflow[data-synced="true"]').waitFor({ timeout: 15_000 });
  await page.locator('svg#canvas .screen', { hasText: 'Checkout' }).waitFor();
  assert.equal(await zoom(), kept);
  assert.equal(await page.locator('svg#canvas .screen[aria-pressed="true"]').count(), 2);

  // Space takes one out of the selection; Esc clears it and returns to the canvas.
  await page.locator('svg#canvas .screen', { hasText: 'Home' }).focus();
  await page.keyboard.press(' ');
  await page.locator('#workflow-status', { hasText: 'Selected Checkout.' }).waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#workflow-status', { hasText: 'Nothing selected.' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'canvas');
  assert.deepEqual(b.problems, []);
  await b.context.close();
});

test('a new Maker builds a screen from a new component with the keyboard; an Editor changes its text inline; the merge clears the marker', async () => {
  for (const [email, name] of [['mia@example.com', 'Mia Maker'], ['ed@example.com', 'Ed Editor']]) {
    execFileSync(BIN, ['admin', 'create-user', '--email', email, '--name', name, '--password-file', '-'],
      { env: serverEnv, input: 'correct horse battery staple\n' });
  }
  const mia = await newPage();
  const { page } = mia;
  await signIn(page, 'mia@example.com');
  const key = (k) => page.keyboard.press(k);
  const type = (t) => page.keyboard.type(t);
  const focused = () => page.evaluate(() => document.activeElement.id);

  // A project of her own (a new repository), by the form and the keyboard only.
  await page.goto(`${base}/projects`);
  await page.locator('#name').focus();
  await type('Shop');
  await key('Enter');
  await page.waitForURL(`${base}/projects/shop`);

  // A component by the form only: a name and a description.
  await page.locator('#component-name').focus();
  await type('Promo banner');
  await key('Tab');
  await key('Tab');
  await type('A banner on top of a page.');
  await key('Tab');
  await key('Enter');
  await page.waitForURL(/\/projects\/shop\/edit\/.+\/PromoBanner\.md$/);
  const specPath = decodeURIComponent(new URL(page.url()).pathname.replace('/projects/shop/edit/', ''));

  // Two props — a text-editable headline and a number — and an event, from the structured editor.
  await page.locator('#add-prop').focus();
  await key('Enter');
  await page.waitForSelector('#prop-0-name');
  assert.equal(await focused(), 'prop-0-name');
  await type('headline');
  await key('Tab'); // type: Text
  await key('Tab');
  await type('"Hello"');
  await key('Tab');
  await key('Tab');
  assert.equal(await focused(), 'prop-0-editable');
  await key('Space');
  await page.locator('#add-prop').focus();
  await key('Enter');
  await page.waitForSelector('#prop-1-name');
  assert.equal(await focused(), 'prop-1-name');
  await type('size');
  await key('Tab');
  assert.equal(await focused(), 'prop-1-kind');
  await key('ArrowDown'); // Number
  assert.equal(await page.locator('#prop-1-kind').inputValue(), 'number');
  await page.locator('#add-event').focus();
  await key('Enter');
  await page.waitForSelector('#event-0-name');
  assert.equal(await focused(), 'event-0-name');
  await type('onDismiss');
  await page.locator('#save').focus();
  await key('Enter');
  await page.waitForSelector('#editor-message');
  assert.match(await page.locator('#editor-message').textContent(), /Saved as version \d+\./);

  // Listed as new on the project page before any merge.
  await page.goto(`${base}/projects/shop`);
  const row = page.locator('#components tr', { hasText: 'Promo banner' });
  assert.match(await row.textContent(), /\bnew\b/);

  // Two screens at once, the new component as their root.
  await page.goto(`${base}/projects/shop/workflow`);
  await page.locator('#workflow[data-synced="true"]').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('#screen-component').inputValue(), 'Promo banner (new, yours)', 'the only component is proposed');
  for (const name of ['Landing', 'Thanks']) {
    await page.locator('#screen-name').focus();
    await type(name);
    await key('Enter');
    await page.locator('svg#canvas .screen', { hasText: name }).waitFor();
  }
  const projectId = await page.locator('#workflow').getAttribute('data-project');
  await page.locator('svg#canvas .screen', { hasText: 'Landing' }).focus();
  await key('Enter');
  await page.waitForURL(/\/workflow\/screens\//);
  const landingUrl = page.url();
  await page.locator('#screen-page[data-synced="true"]').waitFor({ timeout: 15_000 });

  // Its event leads to the second screen.
  await page.getByLabel('When onDismiss, go to').focus();
  assert.equal(await page.getByLabel('When onDismiss, go to').locator('option:checked').textContent(), 'Thanks');
  await key('Tab');
  await key('Enter');
  await page.locator('#instances li', { hasText: '→ Thanks' }).first().waitFor();

  // Two banners inside the root, told apart by their headlines (set in the list).
  for (let i = 0; i < 2; i++) {
    await page.getByLabel('Place inside Promo banner').first().focus();
    await key('Tab');
    await key('Enter');
    await page.locator('#schematic .sbox .sbox .sbox-head').nth(i).waitFor();
  }
  const children = page.locator('#instances > li > .instance > ul.instance-tree > li > .instance');
  for (const [i, text] of [[0, 'First'], [1, 'Second']]) {
    await children.nth(i).getByLabel('headline (text)').focus();
    await type(text);
    await key('Enter');
  }
  const order = () => page.$$eval('#schematic .sbox', (boxes) => boxes.map((b) => {
    let depth = 0;
    for (let p = b.parentElement.closest('.sbox'); p; p = p.parentElement.closest('.sbox')) depth++;
    return `${depth}:${b.querySelector(':scope > dl input.inline-text').value || '-'}`;
  }).join(' '));
  await page.waitForFunction(() => document.querySelectorAll('#schematic input.inline-text').length === 3
    && document.querySelectorAll('#schematic input.inline-text')[2].value === 'Second');
  assert.equal(await order(), '0:- 1:First 1:Second');
  await axeCheck(page, 'screen page with schematic (Maker)');

  // The keyboard reorders and nests in the schematic: Alt+Up, then Alt+Right into the one above.
  const head = (text) => page.locator('#schematic .sbox', { has: page.locator(`:scope > dl input[value="${text}"]`) }).locator(':scope > .sbox-head');
  await page.waitForFunction(() => [...document.querySelectorAll('#schematic input.inline-text')].every((i) => i.getAttribute('value') === i.value));
  await head('Second').focus();
  await key('Alt+ArrowUp');
  await page.waitForFunction(() => document.querySelectorAll('#schematic input.inline-text')[1].value === 'Second');
  assert.equal(await order(), '0:- 1:Second 1:First');
  assert.match(await page.locator('#workflow-status').textContent(), /Moved Promo banner up/);
  assert.equal(await page.evaluate(() => document.activeElement.className), 'sbox-head', 'the focus stays on what moved');
  await head('First').focus();
  await key('Alt+ArrowRight');
  await page.waitForFunction(() => document.querySelectorAll('#schematic .sbox .sbox .sbox').length === 1);
  assert.equal(await order(), '0:- 1:Second 2:First');
  // The list offers the same moves as buttons.
  assert.equal(await page.getByRole('button', { name: 'Move Promo banner out of Promo banner' }).count(), 1);

  // A pointer drags it back out: dropped on the root, it becomes the root's last child.
  await head('First').dragTo(page.locator('#schematic > .sbox > .sbox-head'));
  await page.waitForFunction(() => document.querySelectorAll('#schematic .sbox .sbox .sbox').length === 0);
  assert.equal(await order(), '0:- 1:Second 1:First');
  // Edges still start at the root's event after all that.
  assert.match(await page.locator('#instances li', { hasText: '→ Thanks' }).first().textContent(), /onDismiss/);

  // An Editor joins (keyboard: address, role, Enter).
  await page.goto(`${base}/projects/shop/members`);
  await page.locator('#email').focus();
  await type('ed@example.com');
  await key('Tab');
  await type('Editor'); // type-ahead in the closed list
  assert.equal(await page.locator('#role option:checked').textContent(), 'Editor');
  await key('Tab');
  await key('Enter');
  await page.getByText('Ed Editor').first().waitFor();
  await page.goto(landingUrl);
  await page.locator('#screen-page[data-synced="true"]').waitFor({ timeout: 15_000 });

  // The Editor sees what they may change highlighted, the rest read-only, and changes the text.
  const ed = await newPage();
  await signIn(ed.page, 'ed@example.com');
  await ed.page.goto(landingUrl);
  await ed.page.locator('#screen-page[data-synced="true"]').waitFor({ timeout: 15_000 });
  const rootBox = ed.page.locator('#schematic > .sbox');
  await rootBox.locator(':scope > dl input.inline-text').waitFor();
  assert.equal(await ed.page.locator('#schematic [draggable]').count(), 0, 'nothing to drag for an Editor');
  assert.match(await rootBox.locator(':scope > dl dd.readonly').textContent(), /read-only for you/);
  assert.equal(await ed.page.locator('#instances input:not([disabled])').count(), 3, 'only the headlines are editable in the list');
  await axeCheck(ed.page, 'screen page as an Editor');
  await rootBox.locator(':scope > dl input.inline-text').focus();
  await ed.page.keyboard.type('Summer sale');
  await ed.page.keyboard.press('Enter');
  await ed.page.locator('#workflow-status', { hasText: 'Changed headline of Promo banner.' }).waitFor();
  // The Maker's open page has it live; the server's copy (a fresh page) has it too.
  await page.waitForFunction(() => document.querySelector('#schematic > .sbox > dl input.inline-text').value === 'Summer sale', null, { timeout: 10_000 });
  const fresh = await newPage();
  await signIn(fresh.page, 'ed@example.com');
  await fresh.page.goto(landingUrl);
  await fresh.page.locator('#screen-page[data-synced="true"]').waitFor({ timeout: 15_000 });
  assert.equal(await fresh.page.locator('#schematic > .sbox > dl input.inline-text').inputValue(), 'Summer sale');
  // ... and it reaches git on the Editor's session branch, as canonical JSON.
  const repo = join(dataRoot, 'data', 'repos', `${projectId}.git`);
  const show = (ref) => { try { return execFileSync('git', ['-C', repo, 'show', ref], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(); } catch (e) { return ''; } };
  for (let deadline = Date.now() + 20_000; !show('arno/ed:.arno/workflow.json').includes('"Summer sale"');) {
    assert.ok(Date.now() < deadline, 'the Editor\'s text was not committed to arno/ed');
    await page.waitForTimeout(300);
  }

  // The Maker merges her change request; the component is on main and no longer marked new.
  for (let deadline = Date.now() + 20_000; ;) {
    await page.goto(`${base}/projects/shop/changes`);
    const text = await page.locator('#branches').textContent().catch(() => '');
    if (/arno\/mia/.test(text) && /committed/.test(text) && !/waiting/.test(text)) break;
    assert.ok(Date.now() < deadline, `arno/mia was not committed: ${text}`);
    await page.waitForTimeout(300);
  }
  await page.goto(`${base}/projects/shop/changes/mia`);
  await page.getByRole('button', { name: 'Merge', exact: true }).focus();
  await key('Enter');
  await page.locator('#review').filter({ hasText: 'merged' }).waitFor({ timeout: 10_000 });
  assert.match(show(`main:${specPath}`), /\| headline \| string \| "Hello" \| true \|/);
  await page.goto(`${base}/projects/shop`);
  const merged = await page.locator('#components tr', { hasText: 'Promo banner' }).textContent();
  assert.doesNotMatch(merged, /\bnew\b/);

  // What an edit would break, asked before it is made: removing the headline lists both screens.
  await page.goto(`${base}/projects/shop/edit/${specPath}`);
  await page.locator('#prop-0-remove').focus();
  await key('Enter');
  await page.waitForURL(/\/edit\//);
  await page.locator('#save').focus();
  await key('Enter');
  await page.locator('#impact-list').waitFor();
  assert.equal(await focused(), 'impact-title');
  const impact = await page.locator('#impact-list').textContent();
  // The three banners on Landing store a headline; the one on Thanks keeps the default.
  assert.match(impact, /Removing the prop headline/);
  assert.equal(impact.match(/Landing: stores/g).length, 3, impact);
  assert.doesNotMatch(impact, /Thanks/);
  await axeCheck(page, 'editor asking to confirm what a change breaks');
  // Deleting the component: the same screens, and the edge from its event.
  await page.goto(`${base}/projects/shop/delete/${specPath}`);
  const leftWithout = await page.locator('#impact-list').textContent();
  assert.match(leftWithout, /Landing, its onDismiss edge to Thanks/);
  await axeCheck(page, 'delete confirmation with what it breaks');
  await page.locator('#cancel').focus();
  await key('Enter');
  await page.waitForURL(/\/edit\//);
  assert.match(show(`main:${specPath}`), /\| headline \|/, 'nothing was saved or deleted');
  for (const b of [mia, ed, fresh]) {
    assert.deepEqual(b.problems, []);
    await b.context.close();
  }
});

test('a design system of 150 components: searched, filtered and paged with the keyboard', async () => {
  // A second repository on the appliance's disk, as developers committed it.
  const work = join(dataRoot, 'catalog-work');
  mkdirSync(join(work, '.arno'), { recursive: true });
  writeFileSync(join(work, '.arno/config.json'), '{"version": 1}\n');
  mkdirSync(join(work, 'Design_system/forms'), { recursive: true });
  const hex = (n) => String(n).padStart(12, '0');
  for (let i = 0; i < 150; i++) {
    const name = i % 10 === 0 ? `Date picker ${i}` : `Widget ${i}`;
    const folder = i % 10 === 0 ? 'Design_system/forms' : 'Design_system';
    writeFileSync(join(work, `${folder}/C${String(i).padStart(3, '0')}.md`),
      `---\nid: 00000000-0000-4000-8000-${hex(i)}\nname: ${name}\n---\n# ${name}\n`);
  }
  const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 'Dev', GIT_AUTHOR_EMAIL: 'dev@example.com', GIT_COMMITTER_NAME: 'Dev',
    GIT_COMMITTER_EMAIL: 'dev@example.com', GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' };
  for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['commit', '-q', '-m', 'Catalog']]) {
    execFileSync('git', ['-C', work, ...args], { env: gitEnv });
  }
  const bare = join(dataRoot, 'repos', 'catalog.git');
  execFileSync('git', ['clone', '-q', '--bare', work, bare], { env: gitEnv });

  const b = await newPage();
  const { page } = b;
  await signIn(page);
  await page.goto(`${base}/projects`);
  await page.getByLabel('Name', { exact: true }).fill('Catalog');
  await page.getByLabel(/Existing repository/).fill(bare);
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.waitForURL(`${base}/projects/catalog`);
  const caption = () => page.locator('#components caption').textContent();
  assert.equal(await caption(), '150 component spec(s), showing 1–100');
  assert.equal(await page.locator('#components tbody tr').count(), 100);
  await axeCheck(page, 'project with a search and pages of components');

  // Next page, by the keyboard: the pager's links.
  await page.locator('.pager a[rel=next]').focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(/page=2/);
  assert.equal(await caption(), '150 component spec(s), showing 101–150');
  assert.equal(await page.locator('.pager [aria-current=page]').textContent(), 'Page 2 of 2');

  // A search: typed, Enter; every match on one page, the search kept in the field.
  await page.locator('#component-q').focus();
  await page.keyboard.type('date PICKER');
  await page.keyboard.press('Enter');
  await page.waitForURL(/q=date\+PICKER/);
  assert.equal(await caption(), '15 of 150 component spec(s)');
  assert.equal(await page.locator('#component-q').inputValue(), 'date PICKER');
  assert.equal(await page.locator('.pager').count(), 0);
  await axeCheck(page, 'project with the components filtered');
  // By file too; nothing found says so, with the way back.
  await page.locator('#component-q').fill('forms/C14');
  await page.keyboard.press('Enter');
  await page.waitForURL(/q=forms%2FC14/);
  assert.equal(await caption(), '1 of 150 component spec(s)');
  await page.locator('#component-q').fill('no such thing');
  await page.keyboard.press('Enter');
  await page.locator('#no-match').waitFor();
  assert.match(await page.locator('#no-match').textContent(), /No component matches “no such thing”/);
  await axeCheck(page, 'project with no component matching');
  await page.getByRole('link', { name: 'Show all 150' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/projects/catalog#components-title`);
  assert.equal(await caption(), '150 component spec(s), showing 1–100');
  assert.deepEqual(b.problems, []);
  await b.context.close();
});

test('an Admin connects a GitHub App in the console and creates a project from one of its repositories, by keyboard', async () => {
  // The fake GitHub (tests/github-fake), with one repository the App is installed on.
  const fakeDir = new URL('../github-fake/', import.meta.url).pathname;
  const keyPath = new URL('../fixtures/github-app-key.pem', import.meta.url).pathname;
  const fake = spawn('node', [join(fakeDir, 'server.mjs')], {
    env: { ...process.env, PORT: '0', ROOT: mkdtempSync(join(tmpdir(), 'arno-gh-')), APP_ID: '4711', APP_KEY: keyPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const origin = await new Promise((resolve, reject) => {
      let buf = '';
      fake.stdout.on('data', (c) => {
        buf += c;
        const m = buf.match(/READY (\S+)/);
        if (m) resolve(m[1]);
      });
      fake.once('exit', (code) => reject(new Error(`the fake exited with ${code}`)));
    });
    const made = await (await fetch(`${origin}/_fake/repos`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ owner: 'acme', name: 'brand-system', installation: 7 }),
    })).json();
    execFileSync('git', ['-C', repoPath, 'push', '-q', made.dir, 'main']);

    const { page, problems, context } = await newPage();
    await signIn(page);
    await page.goto(`${base}/admin`);
    await page.getByRole('link', { name: 'Git connections' }).click();
    await page.waitForURL(`${base}/admin/git`);
    await page.locator('#no-connections').waitFor();
    await axeCheck(page, 'git connections, none yet');

    // The form, with the keyboard.
    await page.getByLabel('Name', { exact: true }).fill('github-corp');
    await page.getByLabel('API URL').fill(`${origin}/api/v3`);
    await page.getByLabel('App id').fill('4711');
    await page.getByLabel('Client id').fill('Iv1.fake');
    await page.getByLabel('Private key (PEM)').fill(readFileSync(keyPath, 'utf8'));
    await page.getByLabel('Webhook secret').fill('a long random webhook secret');
    await page.getByLabel('Webhook secret').press('Enter');
    await page.locator('#git-notice').waitFor();
    const card = await page.locator('#conn-github-corp').textContent();
    assert.match(card, /acme\/brand-system/, 'the repositories the App reaches');
    assert.match(card, /\/api\/v1\/webhooks\/github\/github-corp/, 'the webhook URL to give GitHub');
    assert.doesNotMatch(await page.content(), /BEGIN|a long random webhook secret/, 'secrets are not shown back');
    await axeCheck(page, 'git connections, one connected');

    // A project from that repository, chosen in the New project form.
    await page.goto(`${base}/projects`);
    await page.getByLabel('Name', { exact: true }).fill('Brand');
    await page.getByLabel('A GitHub repository').check();
    await page.getByLabel('GitHub repository', { exact: true }).selectOption('github-corp/acme/brand-system');
    await axeCheck(page, 'new project from GitHub');
    await page.getByRole('button', { name: 'Create project' }).press('Enter');
    await page.waitForURL(`${base}/projects/brand`);
    assert.match(await page.content(), /Button/, 'scanned from GitHub');
    await axeCheck(page, 'project on GitHub');

    // The Admin links their GitHub account on their profile, approving on (the fake) GitHub.
    const control = (path, body, method = 'POST') => fetch(`${origin}/_fake/${path}`, {
      method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    await control('settings', { device_interval: 1 });
    await page.goto(`${base}/profile`);
    await page.getByRole('button', { name: 'Link a GitHub account on github-corp' }).press('Enter');
    const code = (await page.locator('#user-code-github-corp').textContent()).trim();
    assert.match(await page.locator('#git-account-github-corp').textContent(), /\/login\/device/, 'where to enter the code');
    await axeCheck(page, 'profile, linking a GitHub account');
    await control('device', { user_code: code, login: 'octo-admin', id: 77 });
    await page.waitForTimeout(1100);
    await page.getByRole('button', { name: 'I have approved it on github-corp' }).press('Enter');
    await page.locator('#profile-message').waitFor();
    assert.match(await page.locator('#git-account-github-corp').textContent(), /linked as\s+octo-admin/);
    await axeCheck(page, 'profile, GitHub account linked');

    // Roles from GitHub on the project's Members page: Read gives no role here.
    await control('repos/acme/brand-system/collaborators', [{ login: 'octo-admin', id: 77, role: 'admin' }], 'PUT');
    await page.goto(`${base}/projects/brand/members`);
    await page.locator('#github-roles').waitFor();
    await page.getByLabel('Read', { exact: true }).selectOption('none');
    await page.getByRole('button', { name: 'Take roles from GitHub' }).press('Enter');
    await page.locator('#members-message').waitFor();
    assert.match(await page.locator('#members').textContent(), /by hand/, 'the creator stays a Maker by hand');
    assert.equal(await page.getByLabel('Read', { exact: true }).inputValue(), 'none');
    await axeCheck(page, 'members, roles from GitHub');

    // CODEOWNERS on main; a save reaches arno/ada and its pull request; CI reports on it.
    const clone = mkdtempSync(join(tmpdir(), 'arno-gh-clone-'));
    execFileSync('git', ['clone', '-q', made.dir, clone]);
    mkdirSync(join(clone, '.github'), { recursive: true });
    writeFileSync(join(clone, '.github/CODEOWNERS'), '* @acme/everyone\n/Design_system/ @acme/design\n');
    execFileSync('git', ['-C', clone, 'add', '.']);
    execFileSync('git', ['-C', clone, '-c', 'user.name=Ivy', '-c', 'user.email=ivy@example.com', 'commit', '-q', '-m', 'owners']);
    execFileSync('git', ['-C', clone, 'push', '-q', 'origin', 'HEAD:main']);
    await page.goto(`${base}/projects/brand/edit/Design_system/Button.md?view=source`);
    await page.locator('#content').focus();
    await page.keyboard.press('Control+End');
    await page.keyboard.type('Reviewed by the design team.\n');
    await page.getByRole('button', { name: 'Save' }).press('Enter');
    await page.locator('#editor-message').waitFor();
    let pull;
    for (const deadline = Date.now() + 20_000; !pull; await page.waitForTimeout(300)) {
      const pulls = await (await fetch(`${origin}/_fake/pulls`)).json();
      pull = (pulls['acme/brand-system'] || []).find((p) => p.head === 'arno/ada');
      assert.ok(Date.now() < deadline, 'no pull request for arno/ada');
    }
    await control('repos/acme/brand-system/checks', { sha: pull.head_sha, name: 'build', status: 'completed', conclusion: 'success' });
    await control('repos/acme/brand-system/checks', { sha: pull.head_sha, name: 'visual tests', status: 'completed', conclusion: 'failure' });
    // Scan now also refreshes pull requests (reconciliation).
    await page.goto(`${base}/projects/brand`);
    await page.getByRole('button', { name: 'Scan now' }).press('Enter');
    await page.waitForLoadState('load');
    for (const deadline = Date.now() + 20_000; ; await page.waitForTimeout(300)) {
      await page.goto(`${base}/projects/brand/changes/ada`);
      if (/failed/.test(await page.locator('#pull-checks').textContent().catch(() => ''))) break;
      assert.ok(Date.now() < deadline, 'the checks never reached the change request');
    }
    assert.match(await page.locator('#pull-checks').textContent(), /1 of 2 check\(s\) failed: visual tests/);
    assert.match(await page.locator('#files').textContent(), /@acme\/design/, 'code owners beside the file');
    await axeCheck(page, 'change request on GitHub with checks and code owners');
    await page.goto(`${base}/projects/brand/edit/Design_system/Button.md`);
    assert.match(await page.locator('#editor-owners').textContent(), /@acme\/design/);
    assert.match(await page.locator('#editor-pull').textContent(), /failing/);
    await axeCheck(page, 'editor on GitHub with its pull request');
    assert.deepEqual(problems, [], 'no CSP violations, script errors or third-party requests');
    await context.close();
  } finally {
    fake.kill('SIGTERM');
  }
});
