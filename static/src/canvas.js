// The workflow canvas: the flow at a glance, as large as the workflow. Screens are schematic boxes
// showing their component tree, edges arrows labelled with their event. Pan (drag the background,
// scroll, arrow keys) and zoom (Ctrl+wheel or pinch, + - 0 1, the buttons); only what is visible
// is drawn, in less detail when zoomed far out. Makers select several screens and move them
// together; the viewport and the selection survive a reload. Enter opens a screen's page.
import {
  Y, connectLive, watchComponents, componentChoices, missingProps, newInstance, deleteScreen, people, csrf, colorFor, screenName,
  instancesOf,
} from './live.js';
import {
  BOX_W, HEADER_H, ROW_H, MAX_ROWS, DETAIL_ZOOM, boxHeight, visibleRect, intersects, zoomAt, fitView, reveal,
  borderPoint, findRoom, clampZoom,
} from './view.js';
import { farView } from './farview.js';

const SVG = 'http://www.w3.org/2000/svg';
const node = (name, attrs = {}, text) => {
  const n = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
};
const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

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
  const zoomLabel = document.getElementById('zoom-level');
  const addButton = document.getElementById('add-screen-button');
  const addWait = document.getElementById('add-screen-wait');

  // ---- what is kept across reloads: the viewport, the selection --------------------------------
  const storeKey = `arno:canvas:${project}`;
  const saved = (() => {
    try { return JSON.parse(localStorage.getItem(storeKey) || 'null'); } catch (e) { return null; }
  })();
  let view = saved && Number.isFinite(saved.k) ? { tx: +saved.tx || 0, ty: +saved.ty || 0, k: clampZoom(+saved.k) } : null;
  const selected = new Set(saved && Array.isArray(saved.selected) ? saved.selected.map(String).slice(0, 500) : []);
  let current = saved && typeof saved.current === 'string' ? saved.current : null;
  // Coming back from a screen (Esc there): that screen is selected and focused again.
  const wanted = new URLSearchParams(location.hash.slice(1)).get('screen');
  if (wanted) {
    selected.clear();
    selected.add(wanted);
    current = wanted;
  }
  let focusPending = Boolean(wanted);
  let persistTimer = 0;
  const persist = () => {
    clearTimeout(persistTimer);
    persistTimer = setTimeout(() => {
      try {
        localStorage.setItem(storeKey, JSON.stringify({ ...view, selected: [...selected].slice(0, 500), current }));
      } catch (e) { /* private mode: nothing kept */ }
    }, 250);
  };

  // ---- the live document and the components -----------------------------------------------------
  const components = watchComponents(el, () => {
    choices = componentChoices(components);
    dirtyAll = true;
    schedule();
    status.textContent = 'A component changed; the canvas shows its new spec.';
  });
  let choices = componentChoices(components);
  const rootField = document.getElementById('screen-component');
  // The first component is proposed; the field takes any other by name (or none, empty).
  if (rootField && !rootField.value && choices.labels.length) rootField.value = choices.labels[0];
  let observed = null;
  let dirtyAll = true;
  const dirty = new Set();
  const live = connectLive(el, {
    presence: { user: me, screen: null, selection: [...selected].slice(0, 100) },
    onChange: () => {
      if (live.screens !== observed) {
        // A new document (first connection, or a fresh start after a refusal).
        observed = live.screens;
        dirtyAll = true;
        observed.observeDeep((events) => {
          for (const e of events) {
            if (e.target === observed) for (const k of e.keysChanged) dirty.add(k);
            else if (e.path.length) dirty.add(String(e.path[0]));
          }
        });
      }
      edgesDirty = true;
      schedule();
    },
    onPresence: () => { presenceDirty = true; schedule(); },
    onStatus: (text) => { status.textContent = text; },
    onRefused: (reason) => {
      alertBox.textContent = `The server refused your change: ${reason}. The workflow was reloaded from the server.`;
      alertBox.hidden = false;
    },
  });

  const screenUrl = (id) => `/projects/${encodeURIComponent(slug)}/workflow/screens/${encodeURIComponent(id)}`;
  const open = (id) => { location.href = screenUrl(id); };

  // ---- the model: one entry per screen, rebuilt only for screens that changed -------------------
  const items = new Map(); // id → { id, name, x, y, w, h, rows, more, stale, instances: Map, s }

  function describe(id, s) {
    const all = instancesOf(s);
    const rows = [];
    const instances = new Map();
    for (const { inst, depth } of all) {
      const cid = inst.get('component_id');
      instances.set(String(inst.get('id') || ''), cid);
      if (rows.length >= MAX_ROWS) continue;
      const c = components.byId.get(cid);
      let text = c ? c.name : (cid ? 'Unknown component' : '(empty)');
      const values = inst.get('props');
      if (c && values instanceof Y.Map) {
        const texts = c.props.filter((p) => p.textEditable && typeof values.get(p.id) === 'string').map((p) => `"${values.get(p.id)}"`);
        if (texts.length) text += ` ${texts.join(' ')}`;
      }
      rows.push({ depth: Math.min(depth, 8), text });
    }
    const more = Math.max(0, all.length - rows.length);
    return {
      id, s, rows, more, instances,
      name: screenName(s),
      x: Number(s.get('x')) || 0,
      y: Number(s.get('y')) || 0,
      w: BOX_W,
      h: boxHeight(rows.length, more),
      stale: missingProps(s, components.byId).length > 0,
    };
  }

  function refreshModel() {
    if (dirtyAll) {
      items.clear();
      live.screens.forEach((s, id) => { if (s instanceof Y.Map) items.set(id, describe(id, s)); });
      dirtyAll = false;
      dirty.clear();
      for (const id of [...nodes.keys()]) dropNode(id);
      return true;
    }
    if (!dirty.size) return false;
    for (const id of dirty) {
      const s = live.screens.get(id);
      if (s instanceof Y.Map) items.set(id, describe(id, s)); else items.delete(id);
      dropNode(id);
    }
    dirty.clear();
    return true;
  }

  const sorted = () => [...items.values()].sort((a, b) => (a.y - b.y) || (a.x - b.x) || a.id.localeCompare(b.id));

  // ---- drawing ------------------------------------------------------------------------------------
  // The server's picture of the workflow stays until the live document has synced.
  const defs = node('defs');
  const marker = node('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' });
  marker.append(node('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'edge-head' }));
  defs.append(marker);
  const viewport = node('g', { class: 'viewport' });
  const edgeLayer = node('g', { class: 'edges', 'aria-hidden': 'true' });
  const screenLayer = node('g', { class: 'screens' });
  const presenceLayer = node('g', { class: 'presence', 'aria-hidden': 'true' });
  // Far out, boxes, edges and names are a bitmap behind the SVG (farview.js); only the focused
  // and selected screens are elements of their own.
  viewport.append(edgeLayer, screenLayer, presenceLayer);
  svg.append(defs, viewport);
  const far = farView(svg);

  const nodes = new Map(); // screen id → its <g>, while visible
  let refocus = null; // a focused screen whose node was replaced: focused again in the same frame
  const redraw = new Set(); // screens to draw again at the next frame (their nodes kept till then)
  function dropNode(id) {
    const n = nodes.get(id);
    if (!n) return;
    if (n === document.activeElement) refocus = id;
    n.remove();
    nodes.delete(id);
  }
  let edgesDirty = true;
  let screensDirty = true;
  let presenceDirty = true;
  let lastLod = null;
  let frame = 0;
  const size = () => ({ width: svg.clientWidth || 800, height: svg.clientHeight || 500 });
  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  /** Others' selections, by screen id: the colours to outline it in. */
  function othersSelecting() {
    const out = new Map();
    for (const p of people(live)) {
      if (p.id === live.doc.clientID) continue;
      const state = live.provider.awareness.getStates().get(p.id) || {};
      for (const id of Array.isArray(state.selection) ? state.selection.slice(0, 100) : []) {
        out.set(String(id), [...(out.get(String(id)) || []), p.user.color]);
      }
    }
    return out;
  }

  function outgoingCounts() {
    const out = new Map();
    live.edges.forEach((e) => {
      if (!(e instanceof Y.Map)) return;
      const from = (e.get('from') || {}).screen_id;
      const to = (e.get('to') || {}).screen_id;
      if (items.has(from) && items.has(to)) out.set(from, (out.get(from) || 0) + 1);
    });
    return out;
  }
  let outgoing = new Map();
  let selectors = new Map();

  function screenNode(item, lod) {
    const out = outgoing.get(item.id) || 0;
    const on = selected.has(item.id);
    const g = node('g', {
      class: `screen${on ? ' selected' : ''}${item.stale ? ' stale' : ''}${lod === 'far' ? ' far' : ''}`,
      tabindex: item.id === current ? 0 : -1,
      role: 'button',
      transform: `translate(${item.x},${item.y})`,
      'data-id': item.id,
      'aria-label': `Screen ${item.name}, ${out} outgoing edge${out === 1 ? '' : 's'}${item.stale ? ', uses props its component no longer has' : ''}`,
      'aria-pressed': String(on),
    });
    g.append(node('rect', { class: 'box', width: item.w, height: item.h, rx: 8 }));
    for (const [i, color] of (selectors.get(item.id) || []).entries()) {
      g.append(node('rect', { class: 'other-selection', x: -4 - 3 * i, y: -4 - 3 * i, width: item.w + 8 + 6 * i, height: item.h + 8 + 6 * i, rx: 10, stroke: color }));
    }
    if (lod === 'far') {
      // Far out: the name only (its size follows the zoom, see --far-font).
      const fits = Math.max(3, Math.floor((BOX_W - 16) / (0.6 * farFont())));
      g.append(node('text', { class: 'name', x: 8, y: 6 }, clip((item.stale ? '⚠ ' : '') + item.name, fits)));
      return g;
    }
    g.append(node('text', { class: 'name', x: 10, y: 20 }, clip((item.stale ? '⚠ ' : '') + item.name, 26)));
    g.append(node('line', { class: 'rule', x1: 0, y1: HEADER_H - 4, x2: item.w, y2: HEADER_H - 4 }));
    item.rows.forEach((r, i) => {
      g.append(node('text', { class: 'row', x: 10 + r.depth * 12, y: HEADER_H + 12 + i * ROW_H }, clip(r.text, 27 - r.depth * 2)));
    });
    if (item.more) g.append(node('text', { class: 'row more', x: 10, y: HEADER_H + 12 + item.rows.length * ROW_H }, `+${item.more} more`));
    if (!item.rows.length && !item.more) g.append(node('text', { class: 'row more', x: 10, y: HEADER_H + 12 }, 'No components'));
    return g;
  }

  function eventName(from, eventId) {
    const cid = from.instances.get(String(eventId && eventId.instance));
    const c = components.byId.get(cid);
    const ev = c && c.events.find((e) => e.id === eventId.event);
    return ev ? ev.name : 'event';
  }

  function drawEdges(area, lod) {
    edgeLayer.replaceChildren();
    live.edges.forEach((e) => {
      if (!(e instanceof Y.Map)) return;
      const f = e.get('from') || {};
      const from = items.get(f.screen_id);
      const to = items.get((e.get('to') || {}).screen_id);
      if (!from || !to) return;
      const [x0, y0] = [Math.min(from.x, to.x), Math.min(from.y, to.y)];
      const [x1, y1] = [Math.max(from.x + from.w, to.x + to.w), Math.max(from.y + from.h, to.y + to.h)];
      if (!intersects(area, x0, y0, x1 - x0, y1 - y0)) return;
      if (from === to) {
        const [x, y] = [from.x + from.w, from.y + 16];
        edgeLayer.append(node('path', { class: 'edge loop', d: `M ${x} ${y} c 40 0 40 30 0 30`, 'marker-end': 'url(#arrow)' }));
        return;
      }
      const a = borderPoint(from, to);
      const b = borderPoint(to, from);
      edgeLayer.append(node('line', { class: 'edge', x1: a.x, y1: a.y, x2: b.x, y2: b.y, 'marker-end': 'url(#arrow)' }));
      if (lod === 'near') {
        const label = eventName(from, { instance: f.instance_id, event: f.event_id });
        edgeLayer.append(node('text', { class: 'edge-label', x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, 'text-anchor': 'middle' }, label));
      }
    });
  }

  /** Far out, names are about 11 px on the screen. */
  const farFont = (k = view.k) => Math.max(14, 11 / k);

  /** What the far view paints of the workflow's rectangle `r` at zoom `k`. */
  function farScene(r, k) {
    const shown = [];
    for (const i of items.values()) if (intersects(r, i.x, i.y, i.w, i.h)) shown.push(i);
    const segments = [];
    live.edges.forEach((e) => {
      if (!(e instanceof Y.Map)) return;
      const from = items.get((e.get('from') || {}).screen_id);
      const to = items.get((e.get('to') || {}).screen_id);
      if (!from || !to || from === to) return;
      const [x0, y0] = [Math.min(from.x, to.x), Math.min(from.y, to.y)];
      const [x1, y1] = [Math.max(from.x + from.w, to.x + to.w), Math.max(from.y + from.h, to.y + to.h)];
      if (!intersects(r, x0, y0, x1 - x0, y1 - y0)) return;
      const a = borderPoint(from, to);
      const b = borderPoint(to, from);
      segments.push([a.x, a.y, b.x, b.y]);
    });
    // Names only while they can be read (about 9 px and more on the screen).
    const font = farFont(k);
    const fits = Math.max(3, Math.floor((BOX_W - 16) / (0.6 * font)));
    const labels = k >= 0.2 ? shown.map((i) => clip((i.stale ? '⚠ ' : '') + i.name, fits)) : null;
    return { items: shown, segments, labels, font };
  }

  /** The screen under a point of the workflow (far view hit-testing), the topmost. */
  function itemAt(x, y) {
    let found = null;
    for (const i of items.values()) if (x >= i.x && x <= i.x + i.w && y >= i.y && y <= i.y + i.h) found = i;
    return found;
  }

  function drawPresence() {
    presenceLayer.replaceChildren();
    for (const p of people(live)) {
      if (p.id === live.doc.clientID || !p.cursor) continue;
      const [x, y] = [Number(p.cursor.x) || 0, Number(p.cursor.y) || 0];
      // Drawn at the same size whatever the zoom.
      const g = node('g', { class: 'cursor', transform: `translate(${x},${y}) scale(${1 / view.k})` });
      g.append(node('circle', { r: 5, fill: p.user.color }), node('text', { x: 8, y: 4 }, p.user.name));
      presenceLayer.append(g);
    }
    presenceList.replaceChildren(...people(live).map((p) => {
      const li = document.createElement('li');
      const s = p.screen && live.screens.get(p.screen);
      li.textContent = `${p.user.name}${s instanceof Y.Map ? ` — on ${screenName(s)}` : ''}`;
      li.style.borderColor = p.user.color;
      return li;
    }));
  }

  let drawnArea = null;
  let drawnK = 0;
  const contains = (outer, inner) => outer && inner.x0 >= outer.x0 && inner.y0 >= outer.y0 && inner.x1 <= outer.x1 && inner.y1 <= outer.y1;

  function draw() {
    frame = 0;
    const { width, height } = size();
    const changed = refreshModel();
    if (el.dataset.synced !== 'true') return;
    if (!view) view = fitView([...items.values()], width, height);
    // Synced: the live canvas replaces the picture, and editing unlocks.
    const picture = svg.querySelector('.server-picture');
    if (picture) picture.remove();
    if (addButton && addButton.disabled) {
      addButton.disabled = false;
      if (addWait) addWait.remove();
    }
    if (focusPending && items.has(current)) view = reveal(view, items.get(current), width, height);
    viewport.setAttribute('transform', `translate(${view.tx},${view.ty}) scale(${view.k})`);
    const zoomed = view.k !== drawnK;
    drawnK = view.k;
    if (zoomed) {
      zoomLabel.textContent = `${Math.round(view.k * 100)} %`;
      svg.dataset.zoom = String(view.k);
      // Far out, names are drawn at a size readable at this zoom.
      svg.style.setProperty('--far-font', `${farFont()}px`);
    }
    const lod = view.k < DETAIL_ZOOM ? 'far' : 'near';
    persist();
    // Presence: cursors are redrawn alone; changed selections redraw the screens they outline.
    let outlines = null;
    if (presenceDirty) {
      presenceDirty = false;
      const next = othersSelecting();
      const key = (m) => JSON.stringify([...m.entries()].sort());
      if (key(next) !== key(selectors)) outlines = next;
      drawPresence();
    } else if (zoomed) {
      drawPresence();
    }
    // Far out, the bitmap follows the view (and is painted again when it needs to be).
    if (lod === 'far') {
      if (changed || edgesDirty || lod !== lastLod) far.invalidate();
      far.show(view, width, height, farScene);
    } else {
      far.hide();
    }
    // Panning inside what is drawn already: only the transform moves.
    const inner = visibleRect(view, width, height);
    if (!changed && !edgesDirty && !screensDirty && !outlines && lod === lastLod && !focusPending && contains(drawnArea, inner)) return;
    screensDirty = false;
    if (lod !== lastLod) {
      for (const id of [...nodes.keys()]) dropNode(id);
      lastLod = lod;
    }
    if (outlines) {
      // Redraw the screens whose outlines changed.
      for (const id of new Set([...outlines.keys(), ...selectors.keys()])) {
        if (String(outlines.get(id)) !== String(selectors.get(id))) dropNode(id);
      }
      selectors = outlines;
    }
    if (changed || edgesDirty) {
      const next = outgoingCounts();
      for (const id of [...nodes.keys()]) if ((next.get(id) || 0) !== (outgoing.get(id) || 0)) dropNode(id);
      outgoing = next;
    }
    // Only what is visible, with a margin (and the focused screen, so focus never falls off).
    const area = visibleRect(view, width, height, Math.max(width, height) / 2);
    const visible = [];
    for (const item of items.values()) if (intersects(area, item.x, item.y, item.w, item.h)) visible.push(item);
    const want = new Set();
    if (lod === 'far') {
      for (const id of selected) if (items.has(id) && intersects(area, items.get(id).x, items.get(id).y, BOX_W, items.get(id).h)) want.add(id);
    } else {
      for (const item of visible) want.add(item.id);
    }
    if (current && items.has(current)) want.add(current);
    for (const id of redraw) dropNode(id);
    redraw.clear();
    for (const id of [...nodes.keys()]) if (!want.has(id)) dropNode(id);
    for (const id of want) {
      if (nodes.has(id)) continue;
      const n = screenNode(items.get(id), lod);
      nodes.set(id, n);
      screenLayer.append(n);
    }
    if (lod === 'near') drawEdges(area, lod); else edgeLayer.replaceChildren();
    drawnArea = area;
    edgesDirty = false;
    if (changed) renderList();
    if (focusPending && nodes.has(current)) {
      focusPending = false;
      nodes.get(current).focus();
    } else if (refocus && nodes.has(refocus) && document.activeElement === document.body) {
      nodes.get(refocus).focus({ preventScroll: true });
    }
    refocus = null;
    svg.dataset.drawn = String(lod === 'far' ? visible.length : nodes.size);
  }

  // The same screens as links to their pages (for screen readers, small screens, new tabs).
  function renderList() {
    screenList.replaceChildren(...sorted().map((i) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = screenUrl(i.id);
      a.textContent = i.name;
      li.append(a);
      return li;
    }));
  }

  // ---- viewport -----------------------------------------------------------------------------------
  function setView(next, say) {
    view = next;
    schedule();
    if (say) status.textContent = say;
  }
  const zoomBy = (factor, px, py) => {
    const { width, height } = size();
    const next = zoomAt(view, factor, px ?? width / 2, py ?? height / 2);
    setView(next, `Zoom ${Math.round(next.k * 100)} %.`);
  };
  const zoomTo = (k) => zoomBy(k / view.k);
  const fit = () => {
    const { width, height } = size();
    setView(fitView([...items.values()], width, height), `Showing all ${items.size} screens.`);
  };
  const panBy = (dx, dy) => setView({ ...view, tx: view.tx + dx, ty: view.ty + dy });

  for (const [id, act] of [['zoom-in', () => zoomBy(1.25)], ['zoom-out', () => zoomBy(0.8)], ['zoom-fit', fit], ['zoom-reset', () => zoomTo(1)]]) {
    document.getElementById(id).addEventListener('click', act);
  }
  new ResizeObserver(() => schedule()).observe(svg);

  // ---- selection ----------------------------------------------------------------------------------
  function announceSelection() {
    const n = selected.size;
    status.textContent = n === 0 ? 'Nothing selected.' : n === 1 ? `Selected ${(items.get([...selected][0]) || {}).name || 'a screen'}.` : `${n} screens selected.`;
    live.provider.awareness.setLocalStateField('selection', [...selected].slice(0, 100));
  }
  function redrawScreens(ids) {
    // Replaced at the next frame, not now: a key pressed meanwhile still reaches the focused one.
    for (const id of ids) redraw.add(id);
    screensDirty = true;
    schedule();
  }
  function focusScreen(id, { only = true } = {}) {
    const before = [...selected, current];
    if (only) { selected.clear(); selected.add(id); }
    current = id;
    const { width, height } = size();
    if (items.has(id)) view = reveal(view, items.get(id), width, height);
    focusPending = true;
    redrawScreens([...before, id]);
    announceSelection();
  }
  function toggle(id) {
    if (selected.has(id)) selected.delete(id); else selected.add(id);
    current = id;
    focusPending = true;
    redrawScreens([id]);
    announceSelection();
  }

  function nearest(item, dx, dy) {
    let best = null;
    let bestScore = Infinity;
    for (const o of items.values()) {
      const [ex, ey] = [o.x - item.x, o.y - item.y];
      if (o.id === item.id || ex * dx + ey * dy <= 0) continue;
      const score = Math.abs(ex) + Math.abs(ey) + 2 * Math.abs(dx ? ey : ex);
      if (score < bestScore) { best = o; bestScore = score; }
    }
    return best;
  }

  function moveSelected(dx, dy) {
    const moving = [...selected].map((id) => items.get(id)).filter(Boolean);
    live.doc.transact(() => {
      for (const i of moving) {
        i.s.set('x', Math.max(0, Math.round(i.x + dx)));
        i.s.set('y', Math.max(0, Math.round(i.y + dy)));
      }
    });
    focusPending = true;
  }

  // ---- keyboard -----------------------------------------------------------------------------------
  svg.addEventListener('keydown', (ev) => {
    const g = ev.target.closest && ev.target.closest('.screen');
    const item = g && items.get(g.dataset.id);
    const dirs = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (ev.ctrlKey || ev.metaKey) {
      if (ev.key === 'a' || ev.key === 'A') {
        ev.preventDefault();
        for (const id of items.keys()) selected.add(id);
        if (item) { current = item.id; focusPending = true; }
        redrawScreens([...items.keys()]);
        announceSelection();
      }
      return;
    }
    if (ev.key === '+' || ev.key === '=') { ev.preventDefault(); zoomBy(1.25); return; }
    if (ev.key === '-' || ev.key === '_') { ev.preventDefault(); zoomBy(0.8); return; }
    if (ev.key === '0') { ev.preventDefault(); zoomTo(1); return; }
    if (ev.key === '1') { ev.preventDefault(); fit(); return; }
    if (!item) {
      // The canvas itself: arrows pan; Enter or Space goes to a screen.
      if (ev.key in dirs) {
        ev.preventDefault();
        const step = ev.shiftKey ? 300 : 60;
        panBy(-dirs[ev.key][0] * step, -dirs[ev.key][1] * step);
      } else if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        const first = (current && items.get(current)) || sorted()[0];
        if (first) focusScreen(first.id, { only: !selected.has(first.id) });
      }
      return;
    }
    if (ev.key in dirs) {
      ev.preventDefault();
      const [dx, dy] = dirs[ev.key];
      if (ev.shiftKey && canEdit) {
        if (!selected.has(item.id)) { selected.clear(); selected.add(item.id); }
        moveSelected(dx * 20, dy * 20);
        status.textContent = `Moved ${selected.size === 1 ? item.name : `${selected.size} screens`}.`;
      } else if (ev.altKey) {
        panBy(-dx * 60, -dy * 60);
      } else {
        const next = nearest(item, dx, dy);
        if (next) focusScreen(next.id);
      }
    } else if (ev.key === ' ') {
      ev.preventDefault();
      toggle(item.id);
    } else if (ev.key === 'Enter') {
      ev.preventDefault();
      open(item.id);
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      const was = [...selected];
      selected.clear();
      redrawScreens(was);
      announceSelection();
      // Back to the canvas, even if the screen was still to be focused at the next frame.
      focusPending = false;
      svg.focus();
    } else if ((ev.key === 'Delete' || ev.key === 'Backspace') && canEdit) {
      ev.preventDefault();
      const gone = selected.has(item.id) ? [...selected] : [item.id];
      const names = gone.map((id) => (items.get(id) || {}).name).filter(Boolean);
      for (const id of gone) deleteScreen(live, id);
      selected.clear();
      current = null;
      svg.focus();
      status.textContent = gone.length === 1 ? `Deleted the screen ${names[0]} and its edges.` : `Deleted ${gone.length} screens and their edges.`;
    }
  });

  // ---- pointer: select, drag screens, pan the background, wheel and pinch ------------------------
  const toCanvas = (ev) => {
    const r = svg.getBoundingClientRect();
    return { x: (ev.clientX - r.left - view.tx) / view.k, y: (ev.clientY - r.top - view.ty) / view.k, px: ev.clientX - r.left, py: ev.clientY - r.top };
  };
  let drag = null;
  svg.addEventListener('pointerdown', (ev) => {
    if (!view || ev.button !== 0) return;
    const at = toCanvas(ev);
    const g = ev.target.closest('.screen');
    const hit = g ? items.get(g.dataset.id) : (lastLod === 'far' ? itemAt(at.x, at.y) : null);
    if (hit) {
      const id = hit.id;
      if (ev.shiftKey || ev.ctrlKey || ev.metaKey) { toggle(id); return; }
      if (!selected.has(id)) focusScreen(id); else { current = id; if (g) g.focus(); }
      if (!canEdit) return;
      const moving = [...selected].map((s) => items.get(s)).filter(Boolean);
      drag = { kind: 'move', from: at, moving, moved: false };
    } else {
      drag = { kind: 'pan', from: at, moved: false };
    }
    svg.setPointerCapture(ev.pointerId);
  });
  let lastCursor = 0;
  svg.addEventListener('pointermove', (ev) => {
    if (!view) return;
    const at = toCanvas(ev);
    const now = Date.now();
    if (now - lastCursor > 100) {
      lastCursor = now;
      live.provider.awareness.setLocalStateField('cursor', { x: Math.round(at.x), y: Math.round(at.y) });
    }
    if (!drag) return;
    drag.moved = true;
    if (drag.kind === 'pan') {
      panBy(ev.movementX || 0, ev.movementY || 0);
      return;
    }
    const [dx, dy] = [at.x - drag.from.x, at.y - drag.from.y];
    for (const i of drag.moving) {
      const n = nodes.get(i.id);
      if (n) n.setAttribute('transform', `translate(${i.x + dx},${i.y + dy})`);
    }
  });
  svg.addEventListener('pointerup', (ev) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (d.kind === 'pan') {
      if (!d.moved && selected.size) {
        const was = [...selected];
        selected.clear();
        redrawScreens(was);
        announceSelection();
      }
      return;
    }
    if (d.moved) {
      const at = toCanvas(ev);
      const [dx, dy] = [at.x - d.from.x, at.y - d.from.y];
      live.doc.transact(() => {
        for (const i of d.moving) {
          i.s.set('x', Math.max(0, Math.round(i.x + dx)));
          i.s.set('y', Math.max(0, Math.round(i.y + dy)));
        }
      });
    }
  });
  svg.addEventListener('dblclick', (ev) => {
    const g = ev.target.closest('.screen');
    const at = toCanvas(ev);
    const hit = g ? items.get(g.dataset.id) : (lastLod === 'far' ? itemAt(at.x, at.y) : null);
    if (hit) open(hit.id);
  });
  svg.addEventListener('wheel', (ev) => {
    if (!view) return;
    ev.preventDefault();
    if (ev.ctrlKey || ev.metaKey) {
      const at = toCanvas(ev);
      zoomBy(Math.exp(-ev.deltaY * 0.01), at.px, at.py);
    } else {
      panBy(-ev.deltaX, -ev.deltaY);
    }
  }, { passive: false });

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
    const snaps = await r.json();
    historyList.replaceChildren(...snaps.map((snap) => {
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

  // ---- adding screens: where there is room, near the middle of what is in view --------------------

  const addScreen = document.getElementById('add-screen');
  if (canEdit && addScreen) {
    addScreen.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = document.getElementById('screen-name').value.trim();
      if (!name || !view) return;
      const componentId = choices.resolve(rootField.value);
      if (componentId === null) {
        rootField.setAttribute('aria-invalid', 'true');
        status.textContent = `No component is called ${rootField.value.trim()}: pick one from the list, or leave the field empty for none.`;
        rootField.focus();
        return;
      }
      rootField.removeAttribute('aria-invalid');
      const id = crypto.randomUUID();
      const { width, height } = size();
      const r = visibleRect(view, width, height);
      const at = findRoom([...items.values()], (r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2);
      live.doc.transact(() => {
        const s = new Y.Map();
        s.set('id', id);
        s.set('name', name);
        s.set('presentation', 'page');
        s.set('x', at.x);
        s.set('y', at.y);
        s.set('root', newInstance(componentId));
        live.screens.set(id, s);
      });
      document.getElementById('screen-name').value = '';
      status.textContent = `Added the screen ${name}. Press Enter on it to edit it.`;
      selected.clear();
      selected.add(id);
      current = id;
      focusPending = true;
      schedule();
    });
  }
}
