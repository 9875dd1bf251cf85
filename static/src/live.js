// What the canvas and the screen page share: the live Yjs document over Arno's y-protocols
// WebSocket (with presence), the project's components (re-read when a spec changes), and the
// document's shape (docs/workflow-format.md). The server enforces roles; when it refuses a change
// the page says why and starts again from the server's copy.
import * as Y from 'yjs';
import { WebsocketProvider, messageAuth } from 'y-websocket';
import * as authProtocol from 'y-protocols/auth';

export { Y };

/** Deeper nesting than this is not shown (a hostile document must not exhaust the page). */
export const MAX_DEPTH = 24;

/**
 * Connect to a project's workflow. `onChange()` runs after every document or presence change,
 * `onStatus(text)` when the connection changes; `presence` is the local presence state to share.
 * Returns a handle whose `doc`, `screens`, `edges` and `provider` follow reconnections after a refusal.
 */
export function connectLive(el, { presence, onChange, onPresence, onStatus, onRefused }) {
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/workflow`;
  const live = { doc: null, provider: null, screens: null, edges: null };
  const connect = () => {
    live.doc = new Y.Doc();
    live.screens = live.doc.getMap('screens');
    live.edges = live.doc.getArray('edges');
    live.provider = new WebsocketProvider(wsUrl, el.dataset.project, live.doc, { disableBc: true });
    // y-protocols' "permission denied": say why, then start over from the server's copy (our
    // refused change exists only here).
    live.provider.messageHandlers[messageAuth] = (_enc, decoder) => {
      authProtocol.readAuthMessage(decoder, live.doc, (_d, reason) => {
        onRefused(reason);
        live.provider.destroy();
        live.doc.destroy();
        connect();
      });
    };
    live.provider.on('status', ({ status }) => {
      onStatus(status === 'connected' ? 'Connected: changes are shared live.'
        : status === 'connecting' ? 'Connecting…' : 'Offline: your changes are kept and sent when the connection returns.');
      el.dataset.status = status;
    });
    live.provider.on('sync', (synced) => { if (synced) el.dataset.synced = 'true'; onChange(); });
    for (const [k, v] of Object.entries(presence)) live.provider.awareness.setLocalStateField(k, v);
    live.provider.awareness.on('change', onPresence || onChange);
    live.doc.on('update', onChange);
  };
  connect();
  return live;
}

/** The project's components by id, from the page, then re-read whenever a spec changes. */
export function watchComponents(el, onChange) {
  const project = el.dataset.project;
  // The page carries them as JSON (a non-executable script element: no escaping of quotes).
  const data = document.getElementById('workflow-components');
  const components = { byId: new Map(JSON.parse((data && data.textContent) || '[]').map((c) => [c.id, c])) };
  const refresh = async () => {
    try {
      const r = await fetch(`/api/v1/projects/${project}/workflow/components`, { credentials: 'same-origin' });
      if (!r.ok) return;
      components.byId = new Map((await r.json()).map((c) => [c.id, c]));
      onChange();
    } catch (e) {
      // The next change event tries again.
    }
  };
  // A save, or a merge on the default branch: re-render with the new spec at once.
  if (window.EventSource) {
    const events = new EventSource(`/api/v1/projects/${project}/events`);
    for (const kind of ['spec_saved', 'default_updated', 'resync']) events.addEventListener(kind, refresh);
    window.addEventListener('beforeunload', () => events.close());
  }
  return components;
}

/**
 * The components a person may place, as one `<datalist id="component-choices">` that every
 * component field of the page shares (typing filters it): built once per change of the
 * components, never per field, so thousands of components cost the same as ten. Returns
 * `resolve(text)`: the id of the component a field names, `''` for an empty field, `null` for
 * text that names none.
 */
export function componentChoices(components) {
  let list = document.getElementById('component-choices');
  if (!list) {
    list = h('datalist', { id: 'component-choices' });
    document.body.append(list);
  }
  const placeable = [...components.byId.values()].filter((c) => c.placeable !== false);
  const base = (c) => (c.mark === 'new' ? `${c.name} (new, yours)` : c.mark === 'changed' ? `${c.name} (changed by you)` : String(c.name));
  const count = new Map();
  for (const c of placeable) count.set(base(c), (count.get(base(c)) || 0) + 1);
  const byLabel = new Map();
  // A plain name works too, when only one component has it (a label changes with its mark).
  const names = new Map();
  for (const c of placeable) {
    const n = String(c.name).toLowerCase();
    names.set(n, names.has(n) ? null : c.id);
  }
  const options = [];
  for (const c of placeable) {
    // Two components of one name are told apart by their file.
    const label = count.get(base(c)) > 1 ? `${base(c)} — ${c.file_path || c.id}` : base(c);
    byLabel.set(label.toLowerCase(), c.id);
    options.push(new Option(label));
  }
  list.replaceChildren(...options);
  return {
    labels: options.map((o) => o.value),
    resolve: (text) => {
      const t = String(text || '').trim();
      if (!t) return '';
      return byLabel.get(t.toLowerCase()) ?? names.get(t.toLowerCase()) ?? null;
    },
  };
}

/** A screen's display name. */
export const screenName = (s) => String((s instanceof Y.Map && s.get('name')) || 'Untitled');

/**
 * Every instance of a screen, depth first: `{ inst, parent (the Y.Array holding it, null for the
 * root), index, depth }`.
 */
export function instancesOf(screen) {
  const out = [];
  const visit = (inst, parent, index, depth) => {
    if (!(inst instanceof Y.Map) || depth > MAX_DEPTH) return;
    out.push({ inst, parent, index, depth });
    const children = inst.get('children');
    if (children instanceof Y.Array) children.forEach((c, i) => visit(c, children, i, depth + 1));
  };
  if (screen instanceof Y.Map) visit(screen.get('root'), null, -1, 0);
  return out;
}

/** Props that instances of a screen set and their component no longer has (any depth). */
export function missingProps(screen, byId) {
  const out = [];
  for (const { inst } of instancesOf(screen)) {
    const component = byId.get(inst.get('component_id'));
    const values = inst.get('props');
    if (component && values instanceof Y.Map) {
      for (const k of values.keys()) if (!component.props.some((p) => p.id === k)) out.push(k);
    }
  }
  return out;
}

/** A new component instance (not yet in a document). */
export function newInstance(componentId) {
  const inst = new Y.Map();
  inst.set('id', crypto.randomUUID());
  inst.set('component_id', componentId);
  inst.set('props', new Y.Map());
  inst.set('children', new Y.Array());
  return inst;
}

/** Delete a screen and every edge from or to it, in one change. */
export function deleteScreen(live, id) {
  live.doc.transact(() => {
    live.screens.delete(id);
    for (let i = live.edges.length - 1; i >= 0; i--) {
      const e = live.edges.get(i);
      if (e instanceof Y.Map && ((e.get('from') || {}).screen_id === id || (e.get('to') || {}).screen_id === id)) live.edges.delete(i, 1);
    }
  });
}

/** The people here now, each with the screen they are on: `[{ id, user, screen }]`. */
export function people(live) {
  return [...live.provider.awareness.getStates().entries()]
    .filter(([, s]) => s.user)
    .map(([id, s]) => ({
      id,
      // The server rewrites every state's user from its own records; still, never let a
      // colour that is not a plain #rrggbb near a style.
      user: {
        name: String(s.user.name || ''),
        handle: String(s.user.handle || ''),
        color: /^#[0-9a-f]{6}$/i.test(s.user.color || '') ? s.user.color : colorFor(String(s.user.handle || '')),
      },
      screen: s.screen,
      cursor: s.cursor,
    }));
}

/** The CSRF token of the page (for the JSON API with the session cookie). */
export const csrf = () => (document.querySelector('input[name=csrf_token]') || {}).value || '';

/** A stable colour per person (contrast-safe on white). */
export function colorFor(handle) {
  const palette = ['#1f5fbf', '#a13a00', '#0b7a3b', '#7a2a9a', '#8a5a00', '#b0204a'];
  let h = 0;
  for (const ch of handle || '') h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return palette[h % palette.length];
}

/** An element with attributes and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else if (k === 'text') n.textContent = v;
    else if (v === true) n.setAttribute(k, '');
    else n.setAttribute(k, String(v));
  }
  n.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return n;
}
