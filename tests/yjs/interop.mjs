// Stock Yjs clients (yjs + y-websocket from npm) against Arno's workflow WebSocket. Run by the
// Rust integration tests (tests/it/workflow.rs), which start Arno and pass, in the environment:
//   BASE      http://127.0.0.1:PORT
//   PROJECT   the project id (the room name)
//   TOKENS    JSON {"makerA", "makerB", "editor", "viewer"}: personal API tokens
//   COMPONENT the component id whose prop LABEL is textEditable and SIZE is not
//   MODE      "interop" (default): the whole scenario; "read": print the document and exit;
//             "fanout": a client on BASE and one on BASE2 (another process) see each other;
//             "stream": edit continuously until the server disappears, print what was acknowledged;
//             "random": the randomized convergence scenario (SEED, CLIENTS, OPS);
//             "burst": writers editing as fast as they can at once (the server merges what it
//             stores together), observers counting the messages they receive.
// Prints one JSON line: {"content": <document as JSON>, ...observations}. Exits non-zero on failure.
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import WS from 'ws';

const { BASE, PROJECT, COMPONENT, LABEL, SIZE } = process.env;
const TOKENS = JSON.parse(process.env.TOKENS || '{}');
const MODE = process.env.MODE || 'interop';
const wsBase = BASE.replace(/^http/, 'ws') + '/api/v1/workflow';

const warnings = [];
console.warn = (...args) => warnings.push(args.join(' '));

/** A WebSocket class that authenticates with a bearer token. */
const bearer = (token) => class extends WS {
  constructor(url, protocols) {
    super(url, protocols, { headers: { Authorization: `Bearer ${token}` } });
  }
};

function connect({ token, ticket, base }) {
  const doc = new Y.Doc();
  const server = base ? base.replace(/^http/, 'ws') + '/api/v1/workflow' : wsBase;
  const provider = new WebsocketProvider(server, PROJECT, doc, {
    WebSocketPolyfill: ticket ? WS : bearer(token),
    params: ticket ? { ticket } : {},
    disableBc: true,
    resyncInterval: -1,
  });
  return { doc, provider, screens: doc.getMap('screens'), edges: doc.getArray('edges') };
}

async function until(what, check, ms = 8000, seen = () => '') {
  const deadline = Date.now() + ms;
  for (;;) {
    if (check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} ${seen()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** JSON with sorted keys: two replicas may list a map's keys in different orders. */
const canonical = (v) => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x)
  ? Object.fromEntries(Object.entries(x).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0)))
  : x));

const synced = (c, name) => until(`${name} to sync`, () => c.provider.synced);
const json = (c) => ({ screens: c.screens.toJSON(), edges: c.edges.toJSON() });

function screen(name, props) {
  const s = new Y.Map();
  s.set('id', name.toLowerCase());
  s.set('name', name);
  s.set('presentation', 'page');
  const root = new Y.Map();
  root.set('id', `${name.toLowerCase()}-root`);
  root.set('component_id', COMPONENT);
  const p = new Y.Map();
  for (const [k, v] of Object.entries(props)) p.set(k, v);
  root.set('props', p);
  root.set('children', new Y.Array());
  s.set('root', root);
  return s;
}

async function ticketFor(token) {
  const r = await fetch(`${BASE}/api/v1/projects/${PROJECT}/workflow/ticket`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
  });
  if (r.status !== 201) throw new Error(`ticket: ${r.status} ${await r.text()}`);
  return (await r.json()).ticket;
}

/** A WebSocket class whose sends are held back a random 0–DELAY ms (order kept). */
const delayed = (token, maxDelay, rand) => class extends bearer(token) {
  send(data) {
    const at = Math.max(this._last || 0, Date.now() + rand() * maxDelay);
    this._last = at;
    setTimeout(() => { if (this.readyState === 1) super.send(data); }, at - Date.now());
  }
};

/** Deterministic randomness from SEED. */
function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// N clients edit at random with delayed messages, going offline and back; the test restarts the
// server when this prints HALF. At the end every client and a newcomer hold the same document,
// and it holds exactly what the clients meant: every screen created and not deleted, every edge.
/** A bearer WebSocket that counts the messages it receives. */
const counting = (token, counter) => class extends bearer(token) {
  constructor(url, protocols) {
    super(url, protocols);
    this.on('message', () => { counter.n += 1; });
  }
};

async function burst() {
  const writers = Number(process.env.WRITERS || 4);
  const edits = Number(process.env.EDITS || 400);
  const rand = mulberry32(Number(process.env.SEED || 7));
  const make = (counter) => {
    const doc = new Y.Doc();
    const provider = new WebsocketProvider(wsBase, PROJECT, doc, {
      WebSocketPolyfill: counting(TOKENS.makerA, counter), disableBc: true, resyncInterval: -1,
    });
    return { doc, provider, screens: doc.getMap('screens'), edges: doc.getArray('edges'), counter };
  };
  const ws = Array.from({ length: writers }, () => make({ n: 0 }));
  const observers = [make({ n: 0 }), make({ n: 0 })];
  const all = [...ws, ...observers];
  await until('all clients to sync', () => all.every((c) => c.provider.synced), 15000);
  for (const o of observers) o.counter.n = 0;
  const expectedScreens = new Set();
  // Every writer edits at once, in bursts with no pause: the server stores what arrives
  // together in one transaction and passes it on as one merged update.
  let total = 0;
  for (let round = 0; round < edits / 50; round++) {
    for (const [w, c] of ws.entries()) {
      for (let k = 0; k < 50; k++) {
        const step = round * 50 + k;
        const r = rand();
        if (r < 0.5) {
          const id = `w${w}-s${step}`;
          const s = new Y.Map();
          s.set('name', `Screen ${step}`);
          s.set('props', new Y.Map());
          c.screens.set(id, s);
          expectedScreens.add(id);
        } else if (r < 0.7 && c.screens.size > 0) {
          const keys = [...c.screens.keys()].filter((key) => key.startsWith(`w${w}-`));
          if (keys.length) {
            const id = keys[Math.floor(rand() * keys.length)];
            c.screens.delete(id);
            expectedScreens.delete(id);
          }
        } else if (r < 0.85) {
          c.edges.insert(Math.floor(rand() * (c.edges.length + 1)), [`w${w}-e${step}`]);
        } else if (c.edges.length > 0) {
          c.edges.delete(Math.floor(rand() * c.edges.length), 1);
        }
        total += 1;
      }
    }
    await new Promise((res) => setTimeout(res, 0));
  }
  const state = (c) => canonical(json(c));
  await until('every client to converge', () => all.every((c) => state(c) === state(all[0])), 30000);
  const fresh = connect({ token: TOKENS.makerB });
  await synced(fresh, 'newcomer');
  await until('the newcomer to converge', () => state(fresh) === state(all[0]), 10000);
  const screens = Object.keys(fresh.screens.toJSON()).sort();
  console.log(JSON.stringify({
    converged: true,
    screens_match: canonical(screens) === canonical([...expectedScreens].sort()),
    edits: total,
    observer_messages: observers.map((o) => o.counter.n),
    content: json(fresh),
  }));
  for (const c of [...all, fresh]) c.provider.destroy();
}

async function randomized() {
  const rand = mulberry32(Number(process.env.SEED || 1));
  const n = Number(process.env.CLIENTS || 5);
  const ops = Number(process.env.OPS || 200);
  const clients = [];
  for (let i = 0; i < n; i++) {
    const doc = new Y.Doc();
    const provider = new WebsocketProvider(wsBase, PROJECT, doc, {
      WebSocketPolyfill: delayed(TOKENS.makerA, 30, rand), disableBc: true, maxBackoffTime: 300,
    });
    clients.push({ doc, provider, screens: doc.getMap('screens'), edges: doc.getArray('edges'), mine: new Set() });
  }
  await until('all clients to sync', () => clients.every((c) => c.provider.synced), 15000);
  const expectedScreens = new Set();
  const expectedEdges = new Set();
  for (let step = 0; step < ops; step++) {
    if (step === Math.floor(ops / 2)) console.log('HALF');
    const c = clients[Math.floor(rand() * n)];
    const r = rand();
    if (r < 0.08 && c.provider.wsconnected) {
      c.provider.disconnect(); // offline: edits continue locally
    } else if (r < 0.16 && !c.provider.shouldConnect) {
      c.provider.connect();
    } else if (r < 0.6) {
      const id = `c${clients.indexOf(c)}-s${step}`;
      const s = new Y.Map();
      s.set('name', `Screen ${step}`);
      s.set('props', new Y.Map());
      c.screens.set(id, s);
      c.mine.add(id);
      expectedScreens.add(id);
    } else if (r < 0.75 && c.mine.size > 0) {
      const id = [...c.mine][Math.floor(rand() * c.mine.size)];
      c.screens.delete(id);
      c.mine.delete(id);
      expectedScreens.delete(id);
    } else if (r < 0.9 && c.mine.size > 0) {
      const id = [...c.mine][Math.floor(rand() * c.mine.size)];
      c.screens.get(id).get('props').set('label', `edited ${step}`);
    } else {
      const id = `c${clients.indexOf(c)}-e${step}`;
      const e = new Y.Map();
      e.set('id', id);
      c.edges.push([e]);
      expectedEdges.add(id);
    }
    await new Promise((res) => setTimeout(res, rand() * 15));
  }
  for (const c of clients) if (!c.provider.shouldConnect) c.provider.connect();
  const state = (c) => canonical(json(c));
  await until('every client to converge', () =>
    clients.every((c) => c.provider.synced) && clients.every((c) => state(c) === state(clients[0])), 30000);
  const fresh = connect({ token: TOKENS.makerB });
  await synced(fresh, 'newcomer');
  await until('the newcomer to converge', () => state(fresh) === state(clients[0]), 10000);
  const screens = Object.keys(fresh.screens.toJSON()).sort();
  const edges = fresh.edges.toJSON().map((e) => e.id).sort();
  console.log(JSON.stringify({
    converged: true,
    screens_match: canonical(screens) === canonical([...expectedScreens].sort()),
    edges_match: canonical(edges) === canonical([...expectedEdges].sort()),
    screens: screens.length,
    edges: edges.length,
  }));
  for (const c of [...clients, fresh]) c.provider.destroy();
}

async function main() {
  if (MODE === 'read') {
    const c = connect({ token: TOKENS.makerA });
    await synced(c, 'reader');
    console.log(JSON.stringify({ content: json(c) }));
    c.provider.destroy();
    return;
  }
  if (MODE === 'stream') {
    // A writer edits every few milliseconds; an observer records every edit the server passed on
    // (the server passes an update on only once it is stored). Ends when the server goes away.
    const start = Number(process.env.START || 0);
    const w = connect({ token: TOKENS.makerA });
    const o = connect({ token: TOKENS.makerB });
    await Promise.all([synced(w, 'writer'), synced(o, 'observer')]);
    const seen = new Set();
    o.screens.observe((event) => {
      for (const key of event.keysChanged) if (o.screens.has(key)) seen.add(key);
    });
    let gone = false;
    for (const c of [w, o]) c.provider.on('status', (e) => { if (e.status === 'disconnected') gone = true; });
    let i = start;
    console.log('STREAMING');
    while (!gone) {
      w.screens.set(`n${i}`, i);
      i += 1;
      await new Promise((r) => setTimeout(r, 3));
    }
    console.log(JSON.stringify({ seen: [...seen], written: i - start }));
    w.provider.destroy();
    o.provider.destroy();
    return;
  }
  if (MODE === 'random') {
    await randomized();
    return;
  }
  if (MODE === 'burst') {
    await burst();
    return;
  }
  if (MODE === 'fanout') {
    // Two clients on two Arno processes sharing one PostgreSQL database.
    const a = connect({ token: TOKENS.makerA });
    const b = connect({ token: TOKENS.makerB, base: process.env.BASE2 });
    await Promise.all([synced(a, 'client on process 1'), synced(b, 'client on process 2')]);
    let started = Date.now();
    a.screens.set('from-1', screen('FromOne', {}));
    await until('process 2 to see the edit made on process 1', () => b.screens.has('from-1'));
    const oneToTwo = Date.now() - started;
    started = Date.now();
    b.screens.set('from-2', screen('FromTwo', {}));
    await until('process 1 to see the edit made on process 2', () => a.screens.has('from-2'));
    const twoToOne = Date.now() - started;
    a.provider.awareness.setLocalState({ user: { name: 'On one' }, marker: 'on-one' });
    await until('presence across processes', () =>
      [...b.provider.awareness.getStates().values()].some((s) => s.marker === 'on-one' && s.user && s.user.handle));
    console.log(JSON.stringify({ content: json(a), same: canonical(json(a)) === canonical(json(b)), oneToTwo, twoToOne }));
    a.provider.destroy();
    b.provider.destroy();
    return;
  }
  const a = connect({ token: TOKENS.makerA });
  const b = connect({ ticket: await ticketFor(TOKENS.makerB) });
  await Promise.all([synced(a, 'maker A'), synced(b, 'maker B')]);

  // Concurrent edits from two clients converge.
  a.doc.transact(() => a.screens.set('s1', screen('Home', { [LABEL]: 'Buy', [SIZE]: 'large' })));
  b.doc.transact(() => {
    b.screens.set('s2', screen('Checkout', {}));
    const edge = new Y.Map();
    edge.set('id', 'e1');
    edge.set('from', { screen_id: 's1', instance_id: 'home-root', event_id: 'onClick' });
    edge.set('to', { screen_id: 's2' });
    edge.set('action', 'navigate');
    b.edges.push([edge]);
  });
  const both = (c) => c.screens.has('s1') && c.screens.has('s2') && c.edges.length === 1;
  await until('both edits everywhere', () => both(a) && both(b));
  const converged = canonical(json(a)) === canonical(json(b));

  // Presence.
  // The server shows its own record of who is there, never the name a client claims.
  a.provider.awareness.setLocalState({ user: { name: 'Maker A' }, screen: 's1' });
  await until('presence of A at B, named by the server', () =>
    [...b.provider.awareness.getStates().values()].some(
      (s) => s.screen === 's1' && s.user && s.user.handle && s.user.name !== 'Maker A' && /^#[0-9a-f]{6}$/.test(s.user.color)),
    8000, () => JSON.stringify([...b.provider.awareness.getStates().values()]));

  // A viewer's change is refused: nobody else gets it.
  const v = connect({ token: TOKENS.viewer });
  await synced(v, 'viewer');
  v.screens.set('evil', screen('Evil', {}));
  await until('the viewer to be refused', () => warnings.some((w) => /Permission denied/.test(w)));

  // An editor may change a textEditable prop's text, and nothing else.
  const e = connect({ token: TOKENS.editor });
  await synced(e, 'editor');
  const props = e.screens.get('s1').get('root').get('props');
  props.set(LABEL, 'Pay');
  await until('the editor\'s label at A', () => a.screens.get('s1').get('root').get('props').get(LABEL) === 'Pay');
  const refusedBefore = warnings.length;
  e.screens.get('s1').set('name', 'Renamed by an editor');
  await until('the editor\'s rename to be refused', () => warnings.length > refusedBefore);
  props.set(SIZE, 'small');
  await until('the editor\'s size change to be refused', () => warnings.length > refusedBefore + 1);
  // Give a wrongly accepted change time to arrive before looking.
  await new Promise((r) => setTimeout(r, 300));

  // A fresh client gets exactly the accepted state.
  const f = connect({ token: TOKENS.makerA });
  await synced(f, 'fresh client');
  const result = {
    content: json(f),
    converged,
    a_has_evil: a.screens.has('evil'),
    a_name: a.screens.get('s1').get('name'),
    a_size: a.screens.get('s1').get('root').get('props').get(SIZE),
    refusals: warnings.filter((w) => /Permission denied/.test(w)).length,
    fresh_equals_a: canonical(json(f)) === canonical(json(a)),
  };
  console.log(JSON.stringify(result));
  for (const c of [a, b, v, e, f]) c.provider.destroy();
}

main().then(() => process.exit(0), (err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
