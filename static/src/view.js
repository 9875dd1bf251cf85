// The canvas' geometry, free of the DOM: the viewport (pan and zoom), what of the workflow is
// visible, the schematic box of a screen, where an edge meets a box, and where a new screen has
// room. The canvas draws what these say; the benchmark and the browser tests rely on the same.

export const MIN_ZOOM = 0.05;
export const MAX_ZOOM = 4;
/** Below this zoom a screen is drawn as its box and name only (its tree would be unreadable). */
export const DETAIL_ZOOM = 0.45;
export const BOX_W = 220;
export const HEADER_H = 30;
export const ROW_H = 18;
/** Rows of a screen's tree drawn in its box; the rest is summed up as "+N more". */
export const MAX_ROWS = 12;
export const GAP = 40;

export const clampZoom = (k) => Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));

/** The height of a screen's box for `rows` rows of its tree (and a "+N more" line). */
export function boxHeight(rows, more) {
  return HEADER_H + Math.max(1, rows + (more > 0 ? 1 : 0)) * ROW_H + 8;
}

/** The part of the workflow (its coordinates) a viewport of `width`×`height` pixels shows. */
export function visibleRect(view, width, height, marginPx = 0) {
  return {
    x0: (-view.tx - marginPx) / view.k,
    y0: (-view.ty - marginPx) / view.k,
    x1: (width - view.tx + marginPx) / view.k,
    y1: (height - view.ty + marginPx) / view.k,
  };
}

export const intersects = (r, x, y, w, h) => x < r.x1 && x + w > r.x0 && y < r.y1 && y + h > r.y0;

/** Zoom by `factor` keeping the point at pixel (`px`, `py`) where it is. */
export function zoomAt(view, factor, px, py) {
  const k = clampZoom(view.k * factor);
  const f = k / view.k;
  return { k, tx: px - (px - view.tx) * f, ty: py - (py - view.ty) * f };
}

/** The viewport that shows every box (with a margin), at most at 100 %. */
export function fitView(items, width, height, pad = 40) {
  if (!items.length) return { tx: pad, ty: pad, k: 1 };
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const i of items) {
    x0 = Math.min(x0, i.x);
    y0 = Math.min(y0, i.y);
    x1 = Math.max(x1, i.x + i.w);
    y1 = Math.max(y1, i.y + i.h);
  }
  const k = clampZoom(Math.min(1, (width - 2 * pad) / Math.max(1, x1 - x0), (height - 2 * pad) / Math.max(1, y1 - y0)));
  return { k, tx: (width - (x1 - x0) * k) / 2 - x0 * k, ty: (height - (y1 - y0) * k) / 2 - y0 * k };
}

/** The viewport moved so that the box is in view (unchanged when it already is). */
export function reveal(view, item, width, height, pad = 24) {
  const r = visibleRect(view, width, height);
  const inside = item.x >= r.x0 && item.y >= r.y0 && item.x + item.w <= r.x1 && item.y + item.h <= r.y1;
  if (inside) return view;
  const k = view.k;
  return { k, tx: width / 2 - (item.x + item.w / 2) * k, ty: Math.max(pad, height / 2 - (item.y + item.h / 2) * k) };
}

/** Where the segment from the centre of box `a` towards the centre of box `b` leaves `a`. */
export function borderPoint(a, b) {
  const [cx, cy] = [a.x + a.w / 2, a.y + a.h / 2];
  const [dx, dy] = [b.x + b.w / 2 - cx, b.y + b.h / 2 - cy];
  if (!dx && !dy) return { x: cx, y: cy };
  const t = Math.min(dx ? a.w / 2 / Math.abs(dx) : Infinity, dy ? a.h / 2 / Math.abs(dy) : Infinity);
  return { x: cx + dx * t, y: cy + dy * t };
}

/**
 * A free place for a new box of `w`×`h` near (`cx`, `cy`): grid positions in rings around it,
 * the first that keeps `GAP` from every box. Never a negative coordinate.
 */
export function findRoom(items, cx, cy, w = BOX_W, h = boxHeight(1, 0)) {
  const stepX = w + GAP;
  const stepY = h + GAP;
  const free = (x, y) => x >= 0 && y >= 0
    && !items.some((i) => x < i.x + i.w + GAP && x + w + GAP > i.x && y < i.y + i.h + GAP && y + h + GAP > i.y);
  const x0 = Math.max(0, Math.round(cx - w / 2));
  const y0 = Math.max(0, Math.round(cy - h / 2));
  for (let ring = 0; ring < 60; ring++) {
    for (let dy = -ring; dy <= ring; dy++) {
      for (let dx = -ring; dx <= ring; dx++) {
        if (Math.max(Math.abs(dx), Math.abs(dy)) !== ring) continue;
        const [x, y] = [x0 + dx * stepX, y0 + dy * stepY];
        if (free(x, y)) return { x, y };
      }
    }
  }
  // Everything near is taken: below everything.
  const bottom = items.reduce((m, i) => Math.max(m, i.y + i.h), 0);
  return { x: x0, y: bottom + GAP };
}
