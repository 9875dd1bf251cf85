// The workflow canvas: the flow at a glance. Screens are boxes, edges arrows; Makers add, move and
// delete screens here, and open a screen (Enter) to edit it on its own page.
import {
  Y, connectLive, watchComponents, missingProps, newInstance, deleteScreen, people, csrf, colorFor, screenName,
} from './live.js';

export function startCanvas(el) {
  const project = el.dataset.project;
  const slug = el.dataset.slug;
  const canEdit = el.dataset.canEdit === 'true';
  const me = { name: el.dataset.userName, handle: el.dataset.userHandle, color: colorFor(el.dataset.userHandle) };

  const svg = document.getElementById('canvas');
  const status = document.getElementById('workflow-status');
  const alertBox = document.getElementById('workflow-alert');
  const presenceList = document.getElementById('presence');
  const screenList = document.getElementById('screen-list');

  // Coming back from a screen (Esc there): that screen is selected and focused again.
  const wanted = new URLSearchParams(location.hash.slice(1)).get('screen');
  let selected = wanted;
  let focusPending = Boolean(wanted);
  let drag = null;

  const components = watchComponents(el, () => {
    render();
    status.textContent = 'A component changed; the canvas shows its new spec.';
  });
  const live = connectLive(el, {
    presence: { user: me, screen: null },
    onChange: render,
    onPresence: renderPresence,
    onStatus: (text) => { status.textContent = text; },
    onRefused: (reason) => {
      alertBox.textContent = `The server refused your change: ${reason}. The workflow was reloaded from the server.`;
      alertBox.hidden = false;
    },
  });

  const screenUrl = (id) => `/projects/${encodeURIComponent(slug)}/workflow/screens/${encodeURIComponent(id)}`;
  const open = (id) => { location.href = screenUrl(id); };

  // ---- rendering ------------------------------------------------------------------------------

  const SVG = 'http://www.w3.org/2000/svg';
  const W = 160;
  const H = 64;
  const node = (name, attrs = {}, text) => {
    const n = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };

  function list() {
    const out = [];
    live.screens.forEach((s, id) => {
      if (!(s instanceof Y.Map)) return;
      out.push({ id, name: screenName(s), x: Number(s.get('x') || 0), y: Number(s.get('y') || 0), s });
    });
    return out.sort((a, b) => (a.y - b.y) || (a.x - b.x) || a.id.localeCompare(b.id));
  }

  function render() {
    const items = list();
    const pos = new Map(items.map((i) => [i.id, i]));
    svg.replaceChildren();
    const defs = node('defs');
    const marker = node('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' });
    marker.append(node('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'edge-head' }));
    defs.append(marker);
    svg.append(defs);
    const outgoing = new Map();
    live.edges.forEach((e) => {
      if (!(e instanceof Y.Map)) return;
      const from = pos.get((e.get('from') || {}).screen_id);
      const to = pos.get((e.get('to') || {}).screen_id);
      if (!from || !to) return;
      outgoing.set(from.id, (outgoing.get(from.id) || 0) + 1);
      svg.append(node('line', {
        x1: from.x + W / 2, y1: from.y + H / 2, x2: to.x + W / 2, y2: to.y + H / 2, class: 'edge', 'marker-end': 'url(#arrow)',
      }));
    });
    for (const item of items) {
      const out = outgoing.get(item.id) || 0;
      const stale = missingProps(item.s, components.byId).length > 0;
      const g = node('g', {
        class: `screen${selected === item.id ? ' selected' : ''}${stale ? ' stale' : ''}`, tabindex: 0, role: 'button',
        transform: `translate(${item.x},${item.y})`, 'data-id': item.id,
        'aria-label': `Screen ${item.name}, ${out} outgoing edge${out === 1 ? '' : 's'}${stale ? ', uses props its component no longer has' : ''}`,
        'aria-pressed': String(selected === item.id),
      });
      g.append(node('rect', { width: W, height: H, rx: 8 }), node('text', { x: 12, y: 36 }, (stale ? '⚠ ' : '') + item.name));
      g.addEventListener('focus', () => select(item.id, false));
      g.addEventListener('keydown', (ev) => onKey(ev, item));
      g.addEventListener('pointerdown', (ev) => startDrag(ev, item));
      g.addEventListener('dblclick', () => open(item.id));
      svg.append(g);
    }
    // The same screens as links to their pages (for screen readers, small screens, new tabs).
    screenList.replaceChildren(...items.map((i) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = screenUrl(i.id);
      a.textContent = i.name;
      li.append(a);
      return li;
    }));
    if (focusPending && pos.has(selected)) {
      focusPending = false;
      requestAnimationFrame(() => select(selected));
    }
    renderPresence();
  }

  function renderPresence() {
    const everyone = people(live);
    presenceList.replaceChildren(...everyone.map((p) => {
      const li = document.createElement('li');
      const s = p.screen && live.screens.get(p.screen);
      li.textContent = `${p.user.name}${s instanceof Y.Map ? ` — on ${screenName(s)}` : ''}`;
      li.style.borderColor = p.user.color;
      return li;
    }));
    for (const c of svg.querySelectorAll('.cursor')) c.remove();
    for (const p of everyone) {
      if (p.id === live.doc.clientID || !p.cursor) continue;
      const g = node('g', { class: 'cursor', transform: `translate(${p.cursor.x},${p.cursor.y})`, 'aria-hidden': 'true' });
      g.append(node('circle', { r: 5, fill: p.user.color }), node('text', { x: 8, y: 4 }, p.user.name));
      svg.append(g);
    }
  }

  // ---- selection, keyboard, dragging ------------------------------------------------------------

  function select(id, focus = true) {
    selected = id;
    for (const g of svg.querySelectorAll('.screen')) {
      const on = g.dataset.id === id;
      g.classList.toggle('selected', on);
      g.setAttribute('aria-pressed', String(on));
      if (on && focus) g.focus();
    }
  }

  function nearest(item, dx, dy) {
    let best = null;
    let bestScore = Infinity;
    for (const o of list()) {
      const [ex, ey] = [o.x - item.x, o.y - item.y];
      if (o.id === item.id || ex * dx + ey * dy <= 0) continue;
      const score = Math.abs(ex) + Math.abs(ey) + 2 * Math.abs(dx ? ey : ex);
      if (score < bestScore) { best = o; bestScore = score; }
    }
    return best;
  }

  function onKey(ev, item) {
    const dirs = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (ev.key in dirs) {
      ev.preventDefault();
      const [dx, dy] = dirs[ev.key];
      if (ev.shiftKey && canEdit) {
        live.doc.transact(() => {
          item.s.set('x', Math.max(0, item.x + dx * 20));
          item.s.set('y', Math.max(0, item.y + dy * 20));
        });
        requestAnimationFrame(() => select(item.id));
      } else {
        const next = nearest(item, dx, dy);
        if (next) select(next.id);
      }
    } else if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      open(item.id);
    } else if (ev.key === 'Delete' && canEdit) {
      ev.preventDefault();
      deleteScreen(live, item.id);
      status.textContent = `Deleted the screen ${item.name} and its edges.`;
    }
  }

  function toCanvas(ev) {
    const p = svg.createSVGPoint();
    p.x = ev.clientX;
    p.y = ev.clientY;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }

  function startDrag(ev, item) {
    if (!canEdit) return;
    const at = toCanvas(ev);
    drag = { item, dx: at.x - item.x, dy: at.y - item.y, moved: false };
    svg.setPointerCapture(ev.pointerId);
  }

  let lastCursor = 0;
  svg.addEventListener('pointermove', (ev) => {
    const at = toCanvas(ev);
    const now = Date.now();
    if (now - lastCursor > 100) {
      lastCursor = now;
      live.provider.awareness.setLocalStateField('cursor', { x: Math.round(at.x), y: Math.round(at.y) });
    }
    if (!drag) return;
    drag.moved = true;
    const g = svg.querySelector(`.screen[data-id="${CSS.escape(drag.item.id)}"]`);
    if (g) g.setAttribute('transform', `translate(${at.x - drag.dx},${at.y - drag.dy})`);
  });
  svg.addEventListener('pointerup', (ev) => {
    if (!drag) return;
    const at = toCanvas(ev);
    const { item, moved, dx, dy } = drag;
    drag = null;
    if (moved) {
      live.doc.transact(() => {
        item.s.set('x', Math.max(0, Math.round(at.x - dx)));
        item.s.set('y', Math.max(0, Math.round(at.y - dy)));
      });
    }
  });

  // ---- history: named and periodic snapshots, compare with now, restore (a new change) -----------

  const api = (path, init = {}) => fetch(`/api/v1/projects/${project}/workflow/${path}`, {
    credentials: 'same-origin',
    ...init,
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf(), ...(init.headers || {}) },
  });
  const historyList = document.getElementById('history');
  const historyResult = document.getElementById('history-result');
  const summary = (c) => {
    const n = (a) => a.length;
    return `screens: ${n(c.screens_added)} added, ${n(c.screens_removed)} removed, ${n(c.screens_changed)} changed; ` +
      `edges: ${n(c.edges_added)} added, ${n(c.edges_removed)} removed, ${n(c.edges_changed)} changed`;
  };
  async function loadHistory() {
    const r = await api('snapshots');
    if (!r.ok) return;
    const items = await r.json();
    historyList.replaceChildren(...items.map((snap) => {
      const li = document.createElement('li');
      const name = snap.label || `Automatic, ${snap.created_at.replace('T', ' ').slice(0, 16)}`;
      li.append(`${name} (${snap.screens} screens) `);
      const compare = document.createElement('button');
      compare.type = 'button';
      compare.className = 'link-button';
      compare.textContent = `Compare ${name} with now`;
      compare.addEventListener('click', async () => {
        const d = await api(`snapshots/${snap.id}/diff`);
        historyResult.textContent = d.ok ? `Since ${name}: ${summary(await d.json())}.` : 'The comparison failed.';
      });
      li.append(compare);
      if (canEdit) {
        const restore = document.createElement('button');
        restore.type = 'button';
        restore.className = 'link-button';
        restore.textContent = `Restore ${name}`;
        restore.addEventListener('click', async () => {
          const d = await api(`snapshots/${snap.id}/restore`, { method: 'POST' });
          historyResult.textContent = d.ok ? `Restored ${name} (${summary(await d.json())}). Restoring another version undoes it.` : 'The restore failed.';
        });
        li.append(' ', restore);
      }
      return li;
    }));
  }
  const saveVersion = document.getElementById('save-version');
  if (saveVersion) {
    saveVersion.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const label = document.getElementById('version-label').value.trim();
      if (!label) return;
      const r = await api('snapshots', { method: 'POST', body: JSON.stringify({ label }) });
      historyResult.textContent = r.ok ? `Saved version ${label}.` : 'The version could not be saved.';
      document.getElementById('version-label').value = '';
      loadHistory();
    });
  }
  loadHistory();

  // ---- adding screens ---------------------------------------------------------------------------

  const addScreen = document.getElementById('add-screen');
  if (canEdit && addScreen) {
    addScreen.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = document.getElementById('screen-name').value.trim();
      if (!name) return;
      const componentId = document.getElementById('screen-component').value;
      const id = crypto.randomUUID();
      const count = live.screens.size;
      live.doc.transact(() => {
        const s = new Y.Map();
        s.set('id', id);
        s.set('name', name);
        s.set('presentation', 'page');
        s.set('x', 40 + (count % 4) * 200);
        s.set('y', 40 + Math.floor(count / 4) * 120);
        s.set('root', newInstance(componentId));
        live.screens.set(id, s);
      });
      document.getElementById('screen-name').value = '';
      status.textContent = `Added the screen ${name}. Press Enter on it to edit it.`;
      requestAnimationFrame(() => select(id));
    });
  }
}
