// The canvas zoomed far out: every box, edge and (while readable) name painted once into a
// bitmap behind the SVG, which pans and zooms as a CSS transform — work for the compositor, not a
// repaint of thousands of shapes per frame — and is painted again when the view settles, or at
// once when the view leaves what was painted, as map viewers do. The SVG above it keeps what is
// interactive (the selected and focused screens, presence); hit-testing stays on the model.

/** The painted margin around the view on each side, as a share of its size. */
const MARGIN = 0.25;
/** Painted again at once when the zoom has changed by more than this factor. */
const RESCALE = 1.6;
/** Painted again this long after the view last moved (sharp text, the margin refilled). */
const SETTLE_MS = 140;
/** The most pixels the bitmap has (Safari draws nothing in a larger canvas). */
const MAX_PIXELS = 16e6;

const cssVar = (el, name, fallback) => getComputedStyle(el).getPropertyValue(name).trim() || fallback;

/**
 * A far view for the SVG canvas `svg`: `show(view, width, height, scene)` places the bitmap for
 * the view, painting it again when needed; `hide()` when the view is near. `scene(rect, k)` is
 * called only when painting, for the workflow's rectangle `rect` at zoom `k`, and returns
 * `{ items, segments, labels, font }`: boxes `{x, y, w, h, stale}`, edges `[x0, y0, x1, y1]` (in
 * workflow coordinates), the boxes' names (or null: none drawn) and their size.
 */
export function farView(svg) {
  const clipBox = document.createElement('div');
  clipBox.className = 'far-bitmap';
  clipBox.setAttribute('aria-hidden', 'true');
  clipBox.hidden = true;
  const bitmap = document.createElement('canvas');
  clipBox.append(bitmap);
  svg.before(clipBox);
  const ctx = bitmap.getContext('2d', { alpha: true });
  let painted = null; // the view it was painted for, with its margins
  let stale = true;
  let settle = 0;
  let last = null;
  const colors = {
    fill: cssVar(svg, '--far-fill', '#fff'),
    stroke: cssVar(svg, '--far-box', '#6b7380'),
    staleStroke: cssVar(document.documentElement, '--danger-fg', '#8a1111'),
    edge: cssVar(svg, '--far-edge', '#48505e'),
    text: cssVar(document.documentElement, '--fg', '#1b1f24'),
  };

  function paint(view, width, height, scene) {
    const mx = Math.round(width * MARGIN);
    const my = Math.round(height * MARGIN);
    const [cw, ch] = [width + 2 * mx, height + 2 * my];
    // Sharp on high-density screens, within what every browser paints (about 16 Mpx a canvas).
    const dpr = Math.min(window.devicePixelRatio || 1, Math.sqrt(MAX_PIXELS / (cw * ch)));
    if (bitmap.width !== Math.round(cw * dpr) || bitmap.height !== Math.round(ch * dpr)) {
      bitmap.width = Math.round(cw * dpr);
      bitmap.height = Math.round(ch * dpr);
      bitmap.style.width = `${cw}px`;
      bitmap.style.height = `${ch}px`;
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, bitmap.width, bitmap.height);
    const k = view.k;
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * (view.tx + mx), dpr * (view.ty + my));
    const rect = { x0: (-view.tx - mx) / k, y0: (-view.ty - my) / k, x1: (width + mx - view.tx) / k, y1: (height + my - view.ty) / k };
    const { items, segments, labels, font } = scene(rect, k);
    ctx.beginPath();
    for (const [x0, y0, x1, y1] of segments) { ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); }
    ctx.lineWidth = 1 / k;
    ctx.strokeStyle = colors.edge;
    ctx.stroke();
    for (const wantStale of [false, true]) {
      ctx.beginPath();
      for (const i of items) if (Boolean(i.stale) === wantStale) ctx.rect(i.x, i.y, i.w, i.h);
      ctx.fillStyle = colors.fill;
      ctx.fill();
      ctx.lineWidth = 1.5 / k;
      ctx.strokeStyle = wantStale ? colors.staleStroke : colors.stroke;
      ctx.stroke();
    }
    if (labels) {
      ctx.font = `600 ${font}px system-ui, sans-serif`;
      ctx.textBaseline = 'top';
      ctx.fillStyle = colors.text;
      items.forEach((i, n) => ctx.fillText(labels[n], i.x + 8, i.y + 6));
    }
    painted = { ...view, mx, my, width, height, dpr: window.devicePixelRatio || 1 };
    stale = false;
  }

  /** The bitmap moved and scaled from the view it was painted for to `view`. */
  function place(view) {
    const s = view.k / painted.k;
    const dx = view.tx - s * (painted.tx + painted.mx);
    const dy = view.ty - s * (painted.ty + painted.my);
    bitmap.style.transform = `translate(${dx}px, ${dy}px) scale(${s})`;
  }

  /** Whether the view shows anything the bitmap does not hold (or holds too coarsely). */
  function outgrown(view, width, height) {
    if (!painted || painted.width !== width || painted.height !== height) return true;
    // Moved to a screen of another pixel density: painted again, sharp there.
    if (painted.dpr !== (window.devicePixelRatio || 1)) return true;
    const s = view.k / painted.k;
    if (s > RESCALE || s < 1 / RESCALE) return true;
    // The visible rectangle, in the bitmap's pixels: inside it (the margin may be used up)?
    const x0 = (0 - view.tx) / s + painted.tx + painted.mx;
    const y0 = (0 - view.ty) / s + painted.ty + painted.my;
    const x1 = x0 + width / s;
    const y1 = y0 + height / s;
    return x0 < 0 || y0 < 0 || x1 > width + 2 * painted.mx || y1 > height + 2 * painted.my;
  }

  return {
    /** The scene changed (boxes, edges, names): painted again at the next `show`. */
    invalidate() { stale = true; },
    show(view, width, height, scene) {
      clipBox.hidden = false;
      last = { view, width, height, scene };
      if (stale || outgrown(view, width, height)) paint(view, width, height, scene);
      place(view);
      const exact = painted.k === view.k && painted.tx === view.tx && painted.ty === view.ty;
      clearTimeout(settle);
      if (!exact) {
        settle = setTimeout(() => {
          const l = last;
          if (!l || clipBox.hidden) return;
          paint(l.view, l.width, l.height, l.scene);
          place(l.view);
        }, SETTLE_MS);
      }
    },
    hide() {
      clearTimeout(settle);
      if (clipBox.hidden) return;
      clipBox.hidden = true;
      painted = null;
      stale = true;
      last = null;
    },
  };
}
