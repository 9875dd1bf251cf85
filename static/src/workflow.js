// The workflow canvas: a live Yjs document (screens and edges) shared over Arno's y-protocols
// WebSocket, with presence. The server enforces roles; this page only offers what the role may
// do, and when the server refuses a change it says why and starts again from the server's copy.
import * as Y from 'yjs';
import { WebsocketProvider, messageAuth } from 'y-websocket';
import * as authProtocol from 'y-protocols/auth';

const root = document.getElementById('workflow');
if (root) start(root);

function start(el) {
  const project = el.dataset.project;
  const slug = el.dataset.slug;
  const canEdit = el.dataset.canEdit === 'true';
  const me = { name: el.dataset.userName, handle: el.dataset.userHandle, color: colorFor(el.dataset.userHandle) };
  let byId = new Map(JSON.parse(el.dataset.components || '[]').map((c) => [c.id, c]));
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/workflow`;

  const svg = document.getElementById('canvas');
  const status = document.getElementById('workflow-status');
  const alertBox = document.getElementById('workflow-alert');
  const presenceList = document.getElementById('presence');
  const screenList = document.getElementById('screen-list');
  const panel = document.getElementById('screen-panel');

  let doc;
  let provider;
  let screens;
  let edges;
  let selected = null;
  let drag = null;

  function connect() {
    doc = new Y.Doc();
    screens = doc.getMap('screens');
    edges = doc.getArray('edges');
    provider = new WebsocketProvider(wsUrl, project, doc, { disableBc: true });
    // y-protocols' "permission denied": say why, then start over from the server's copy (our
    // refused change exists only here).
    provider.messageHandlers[messageAuth] = (_enc, decoder) => {
      authProtocol.readAuthMessage(decoder, doc, (_d, reason) => refused(reason));
    };
    provider.on('status', ({ status: s }) => {
      status.textContent = s === 'connected' ? 'Connected: changes are shared live.'
        : s === 'connecting' ? 'Connecting…' : 'Offline: your changes are kept and sent when the connection returns.';
      el.dataset.status = s;
    });
    provider.on('sync', (synced) => { if (synced) el.dataset.synced = 'true'; render(); });
    provider.awareness.setLocalStateField('user', me);
    provider.awareness.on('change', renderPresence);
    doc.on('update', render);
  }

  function refused(reason) {
    alertBox.textContent = `The server refused your change: ${reason}. The workflow was reloaded from the server.`;
    alertBox.hidden = false;
    provider.destroy();
    doc.destroy();
    connect();
  }

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
    screens.forEach((s, id) => {
      if (!(s instanceof Y.Map)) return;
      out.push({ id, name: String(s.get('name') || 'Untitled'), x: Number(s.get('x') || 0), y: Number(s.get('y') || 0), s });
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
    edges.forEach((e) => {
      if (!(e instanceof Y.Map)) return;
      const from = pos.get((e.get('from') || {}).screen_id);
      const to = pos.get((e.get('to') || {}).screen_id);
      if (!from || !to) return;
      svg.append(node('line', {
        x1: from.x + W / 2, y1: from.y + H / 2, x2: to.x + W / 2, y2: to.y + H / 2, class: 'edge', 'marker-end': 'url(#arrow)',
      }));
    });
    for (const item of items) {
      const out = edges.toArray().filter((e) => e instanceof Y.Map && (e.get('from') || {}).screen_id === item.id).length;
      const stale = missingProps(item.s).length > 0;
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
      svg.append(g);
    }
    // The same screens as a list (for screen readers and small screens).
    screenList.replaceChildren(...items.map((i) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'link-button';
      b.textContent = i.name;
      b.addEventListener('click', () => open(i.id));
      li.append(b);
      return li;
    }));
    for (const sel of document.querySelectorAll('select[data-screens]')) fillScreens(sel, items);
    if (selected && !pos.has(selected)) closePanel();
    if (selected && !panel.hidden) fillPanel();
    renderPresence();
  }

  function renderPresence() {
    const states = [...provider.awareness.getStates().entries()];
    presenceList.replaceChildren(...states.filter(([, s]) => s.user).map(([, s]) => {
      const li = document.createElement('li');
      const where = s.screen && screens.get(s.screen) instanceof Y.Map ? ` — on ${screens.get(s.screen).get('name')}` : '';
      li.textContent = `${s.user.name}${where}`;
      li.style.borderColor = s.user.color;
      return li;
    }));
    for (const c of svg.querySelectorAll('.cursor')) c.remove();
    for (const [id, s] of states) {
      if (id === doc.clientID || !s.cursor || !s.user) continue;
      const g = node('g', { class: 'cursor', transform: `translate(${s.cursor.x},${s.cursor.y})`, 'aria-hidden': 'true' });
      g.append(node('circle', { r: 5, fill: s.user.color }), node('text', { x: 8, y: 4 }, s.user.name));
      svg.append(g);
    }
  }

  function fillScreens(sel, items) {
    const value = sel.value;
    sel.replaceChildren(...items.map((i) => new Option(i.name, i.id)));
    if (items.some((i) => i.id === value)) sel.value = value;
    if (sel.id === 'edge-from') fillEvents();
  }

  function fillEvents() {
    const sel = document.getElementById('edge-event');
    if (!sel) return;
    const from = screens.get(document.getElementById('edge-from').value);
    const options = [];
    if (from instanceof Y.Map) {
      for (const { inst } of instancesOf(from)) {
        const component = byId.get(inst.get('component_id'));
        for (const e of component ? component.events : []) {
          options.push(new Option(`${component.name}: ${e.name}`, `${inst.get('id')}|${e.id}`));
        }
      }
    }
    sel.replaceChildren(...options);
    sel.disabled = options.length === 0;
  }

  /** Prop ids a screen's instances set that their component no longer has (root and children). */
  function missingProps(screen) {
    const out = [];
    const visit = (inst) => {
      if (!(inst instanceof Y.Map)) return;
      const component = byId.get(inst.get('component_id'));
      const values = inst.get('props');
      if (component && values instanceof Y.Map) {
        for (const k of values.keys()) if (!component.props.some((p) => p.id === k)) out.push(k);
      }
      const children = inst.get('children');
      if (children instanceof Y.Array) children.forEach(visit);
    };
    visit(screen.get('root'));
    return out;
  }

  // When a spec changes (a save, or a merge on the default branch), re-render with it at once.
  async function refreshComponents() {
    try {
      const r = await fetch(`/api/v1/projects/${project}/workflow/components`, { credentials: 'same-origin' });
      if (!r.ok) return;
      byId = new Map((await r.json()).map((c) => [c.id, c]));
      render();
      status.textContent = 'A component changed; the canvas shows its new spec.';
    } catch (e) {
      // The next change event tries again.
    }
  }
  if (window.EventSource) {
    const events = new EventSource(`/api/v1/projects/${project}/events`);
    for (const kind of ['spec_saved', 'default_updated', 'resync']) events.addEventListener(kind, refreshComponents);
    window.addEventListener('beforeunload', () => events.close());
  }

  // ---- selection, keyboard, dragging ------------------------------------------------------------

  function select(id, focus = true) {
    selected = id;
    provider.awareness.setLocalStateField('screen', id);
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
        item.s.set('x', item.x + dx * 20);
        item.s.set('y', item.y + dy * 20);
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
      remove(item.id);
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

  svg.addEventListener('pointermove', (ev) => {
    const at = toCanvas(ev);
    const now = Date.now();
    if (!svg._lastCursor || now - svg._lastCursor > 100) {
      svg._lastCursor = now;
      provider.awareness.setLocalStateField('cursor', { x: Math.round(at.x), y: Math.round(at.y) });
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
      doc.transact(() => {
        item.s.set('x', Math.max(0, Math.round(at.x - dx)));
        item.s.set('y', Math.max(0, Math.round(at.y - dy)));
      });
    }
  });

  // ---- the screen panel ("open" a screen; Esc returns to the canvas) ------------------------------

  function open(id) {
    select(id, false);
    panel.hidden = false;
    fillPanel();
    document.getElementById('panel-title').focus();
  }

  function closePanel() {
    panel.hidden = true;
    const g = selected && svg.querySelector(`.screen[data-id="${CSS.escape(selected)}"]`);
    if (g) g.focus();
  }

  panel.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.preventDefault(); closePanel(); } });
  document.getElementById('panel-close').addEventListener('click', closePanel);

  /** The instances of a screen: the root, then its children (in order). */
  function instancesOf(screen) {
    const out = [];
    const root = screen.get('root');
    if (root instanceof Y.Map) {
      out.push({ inst: root, parent: null, index: -1 });
      const children = root.get('children');
      if (children instanceof Y.Array) {
        children.forEach((c, index) => { if (c instanceof Y.Map) out.push({ inst: c, parent: children, index }); });
      }
    }
    return out;
  }

  function fillPanel() {
    const s = screens.get(selected);
    if (!(s instanceof Y.Map)) return;
    document.getElementById('panel-title').textContent = String(s.get('name') || 'Untitled');
    const rename = document.getElementById('rename');
    if (rename && document.activeElement !== rename) rename.value = String(s.get('name') || '');
    const root = s.get('root');
    const rootComponent = root instanceof Y.Map ? byId.get(root.get('component_id')) : null;
    document.getElementById('panel-component').textContent = rootComponent ? rootComponent.name : 'no component';
    const box = document.getElementById('panel-props');
    const focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement.id : null;
    box.replaceChildren();
    for (const [n, { inst, parent, index }] of instancesOf(s).entries()) {
      const component = byId.get(inst.get('component_id'));
      const section = document.createElement('section');
      section.className = 'instance';
      const title = document.createElement('h3');
      title.textContent = `${parent ? 'Placed' : 'Root'}: ${component ? component.name : 'unknown component'}`;
      section.append(title);
      const values = inst.get('props') instanceof Y.Map ? inst.get('props') : null;
      for (const p of component ? component.props : []) {
        const row = document.createElement('div');
        row.className = 'field';
        const id = `prop-${n}-${p.id}`;
        const label = document.createElement('label');
        label.htmlFor = id;
        label.textContent = p.name + (p.textEditable ? ' (text)' : '');
        const input = document.createElement('input');
        input.id = id;
        input.value = values && values.get(p.id) !== undefined ? String(values.get(p.id)) : (p.default || '');
        input.disabled = !(canEdit || (el.dataset.canEditText === 'true' && p.textEditable));
        input.addEventListener('change', () => { if (values) values.set(p.id, input.value); });
        row.append(label, input);
        section.append(row);
      }
      if (parent && canEdit) {
        const removeButton = document.createElement('button');
        removeButton.type = 'button';
        removeButton.className = 'secondary';
        removeButton.textContent = `Remove ${component ? component.name : 'instance'} from the screen`;
        removeButton.addEventListener('click', () => parent.delete(index, 1));
        section.append(removeButton);
      }
      box.append(section);
    }
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    // Instances whose component lost a prop are flagged, never silently dropped.
    const missing = missingProps(s);
    const flag = document.getElementById('panel-missing');
    flag.hidden = missing.length === 0;
    flag.textContent = missing.length ? `This screen sets ${missing.length} prop(s) their components no longer have: ${missing.join(', ')}` : '';
  }

  // ---- editing ----------------------------------------------------------------------------------

  function remove(id) {
    doc.transact(() => {
      screens.delete(id);
      for (let i = edges.length - 1; i >= 0; i--) {
        const e = edges.get(i);
        if (e instanceof Y.Map && ((e.get('from') || {}).screen_id === id || (e.get('to') || {}).screen_id === id)) edges.delete(i, 1);
      }
    });
    closePanel();
  }

  // ---- history: named and periodic snapshots, compare with now, restore (a new change) -----------

  const csrf = () => (document.querySelector('input[name=csrf_token]') || {}).value || '';
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

  if (canEdit) wireEditing();

  function wireEditing() {
    document.getElementById('add-screen').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = document.getElementById('screen-name').value.trim();
      if (!name) return;
      const componentId = document.getElementById('screen-component').value;
      const id = crypto.randomUUID();
      const count = screens.size;
      doc.transact(() => {
        const s = new Y.Map();
        s.set('id', id);
        s.set('name', name);
        s.set('presentation', 'page');
        s.set('x', 40 + (count % 4) * 200);
        s.set('y', 40 + Math.floor(count / 4) * 120);
        const inst = new Y.Map();
        inst.set('id', crypto.randomUUID());
        inst.set('component_id', componentId);
        inst.set('props', new Y.Map());
        inst.set('children', new Y.Array());
        s.set('root', inst);
        screens.set(id, s);
      });
      document.getElementById('screen-name').value = '';
      requestAnimationFrame(() => select(id));
    });

    document.getElementById('edge-from').addEventListener('change', fillEvents);
    document.getElementById('add-edge').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const from = document.getElementById('edge-from').value;
      const to = document.getElementById('edge-to').value;
      const [instanceId, eventId] = (document.getElementById('edge-event').value || '|').split('|');
      const s = screens.get(from);
      if (!from || !to || !(s instanceof Y.Map)) return;
      const e = new Y.Map();
      e.set('id', crypto.randomUUID());
      e.set('from', { screen_id: from, instance_id: instanceId, event_id: eventId });
      e.set('to', { screen_id: to });
      e.set('action', 'navigate');
      edges.push([e]);
    });

    document.getElementById('place-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const s = screens.get(selected);
      const root = s instanceof Y.Map ? s.get('root') : null;
      if (!(root instanceof Y.Map)) return;
      let children = root.get('children');
      const inst = new Y.Map();
      inst.set('id', crypto.randomUUID());
      inst.set('component_id', document.getElementById('place-component').value);
      inst.set('props', new Y.Map());
      inst.set('children', new Y.Array());
      doc.transact(() => {
        if (!(children instanceof Y.Array)) {
          children = new Y.Array();
          root.set('children', children);
        }
        children.push([inst]);
      });
    });

    document.getElementById('rename-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const s = screens.get(selected);
      const name = document.getElementById('rename').value.trim();
      if (s instanceof Y.Map && name) s.set('name', name);
    });
    document.getElementById('delete-screen').addEventListener('click', () => { if (selected) remove(selected); });

  }

  connect();
}

/** A stable colour per person (contrast-safe on white). */
function colorFor(handle) {
  const palette = ['#1f5fbf', '#a13a00', '#0b7a3b', '#7a2a9a', '#8a5a00', '#b0204a'];
  let h = 0;
  for (const ch of handle || '') h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}
