// The canvas benchmark's peer page: Excalidraw, full viewport, with the same workflow as
// tests/browser/bench-canvas.mjs draws in Arno — SCREENS boxes (220 × 250, on a grid of
// ceil(sqrt(SCREENS × 1.6)) columns, 280 px apart across and 320 px down), each labelled
// "Screen i", and an arrow from each box to the next. The number comes from `?screens=N`
// (2,000 if absent).
//
// What bench-peer.mjs reads from `window`:
//   peerReady   true once the first picture with every element has been painted
//   peerTimes   { scene: ms spent building the elements, ready: performance.now() at readiness }
//   peer        { api, fitAll(), hundred(), view() }: the Excalidraw API, the two views the
//               benchmark measures (everything in view; 100 % in the middle of the workflow),
//               and the current view (scroll, zoom, boxes in view)
import React from 'react';
import { createRoot } from 'react-dom/client';
import { Excalidraw, convertToExcalidrawElements } from '@excalidraw/excalidraw';
import '@excalidraw/excalidraw/index.css';

const SCREENS = Number(new URLSearchParams(location.search).get('screens') || 2000);
const COLUMNS = Math.ceil(Math.sqrt(SCREENS * 1.6));
const W = 220;
const H = 250;
const at = (i) => ({ x: (i % COLUMNS) * 280, y: Math.floor(i / COLUMNS) * 320 });

// The scene, in Excalidraw's "element skeleton" form (its public API for building scenes in
// code): a rectangle with a bound text label per screen, and an arrow bound at both ends to
// consecutive screens. convertToExcalidrawElements turns it into full elements (ids, seeds,
// measured text, binding records). It runs in the page, so its cost is part of the first picture,
// as loading the document is in Arno's.
const sceneStart = performance.now();
const skeleton = [];
for (let i = 0; i < SCREENS; i++) {
  skeleton.push({ type: 'rectangle', id: `screen-${i}`, ...at(i), width: W, height: H, label: { text: `Screen ${i}` } });
}
for (let i = 0; i + 1 < SCREENS; i++) {
  // From the middle of this box's right side to the middle of the next box's left side (for the
  // last box of a row, the next one is at the start of the row below).
  const a = at(i);
  const b = at(i + 1);
  const from = { x: a.x + W, y: a.y + H / 2 };
  const to = { x: b.x, y: b.y + H / 2 };
  skeleton.push({
    type: 'arrow', id: `edge-${i}`, x: from.x, y: from.y, width: to.x - from.x, height: to.y - from.y,
    start: { id: `screen-${i}` }, end: { id: `screen-${i + 1}` },
  });
}
const elements = convertToExcalidrawElements(skeleton);
window.peerTimes = { scene: performance.now() - sceneStart };

// The bounds of the whole workflow in scene coordinates.
const right = (COLUMNS - 1) * 280 + W;
const bottom = (Math.ceil(SCREENS / COLUMNS) - 1) * 320 + H;

// Scroll so that scene point (cx, cy) is in the middle of the viewport at `zoom`. Excalidraw maps
// a scene point to the viewport as (x + scrollX) × zoom.
const centreOn = (api, cx, cy, zoom) => {
  const { width, height } = api.getAppState();
  api.updateScene({ appState: { zoom: { value: zoom }, scrollX: width / 2 / zoom - cx, scrollY: height / 2 / zoom - cy } });
  return zoom;
};

function onApi(api) {
  window.peer = {
    api,
    // Everything in view. Excalidraw's own "zoom to fit" (scrollToContent with fitToViewport)
    // stops at its minimum zoom, 10 %, which at 2,000 screens does not show the whole workflow,
    // so the fitting zoom is set directly; updateScene takes it as given.
    fitAll: () => {
      const { width, height } = api.getAppState();
      return centreOn(api, right / 2, bottom / 2, Math.min(width / right, height / bottom) * 0.95);
    },
    // 100 %, centred on the middle of the workflow (as Arno's "0" key).
    hundred: () => centreOn(api, right / 2, bottom / 2, 1),
    // The current view, to check that wheel events move it, and how many boxes it shows (at
    // least in part) — what Arno's canvas reports as "drawn".
    view: () => {
      const { scrollX, scrollY, width, height, zoom } = api.getAppState();
      const [x0, y0, x1, y1] = [-scrollX, -scrollY, width / zoom.value - scrollX, height / zoom.value - scrollY];
      let boxes = 0;
      for (let i = 0; i < SCREENS; i++) {
        const { x, y } = at(i);
        if (x < x1 && x + W > x0 && y < y1 && y + H > y0) boxes++;
      }
      return { scrollX, scrollY, zoom: zoom.value, boxes };
    },
  };
  // Ready when the scene holds every element, the fitted view has been committed and two frames
  // have been painted since (Excalidraw loads initialData asynchronously after mounting, and
  // React may commit the view a frame or more after updateScene).
  const expected = elements.length;
  let zoom = 0;
  const poll = () => {
    if (api.getSceneElements().length < expected) return requestAnimationFrame(poll);
    if (!zoom) zoom = window.peer.fitAll();
    if (api.getAppState().zoom.value !== zoom) return requestAnimationFrame(poll);
    requestAnimationFrame(() => requestAnimationFrame(() => {
      window.peerTimes.ready = performance.now();
      window.peerReady = true;
    }));
  };
  requestAnimationFrame(poll);
}

createRoot(document.getElementById('root')).render(
  <div style={{ position: 'fixed', inset: 0 }}>
    <Excalidraw excalidrawAPI={onApi} initialData={{ elements, appState: { viewBackgroundColor: '#ffffff' } }} />
  </div>,
);
