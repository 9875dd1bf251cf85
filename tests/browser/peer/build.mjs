// Builds the peer page into dist/: index.html, main.js (+ the chunks Excalidraw loads on demand,
// such as its translations), main.css, and Excalidraw's fonts. Nothing is loaded from the internet
// at run time: Excalidraw looks for its fonts under window.EXCALIDRAW_ASSET_PATH (set to the page's
// own origin in index.html) before its CDN fallback, and they are copied there.
// Usage: node build.mjs
import { build } from 'esbuild';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);

await build({
  entryPoints: [join(here, 'src/main.jsx')],
  outdir: dist,
  bundle: true,
  format: 'esm',
  splitting: true, // Excalidraw's dynamic imports (locales, etc.) become chunks of their own
  chunkNames: 'chunks/[name]-[hash]',
  minify: true,
  jsx: 'automatic',
  conditions: ['production'], // the package's production build and CSS
  define: { 'process.env.NODE_ENV': '"production"' },
  // The stylesheet's url("./fonts/...") are left as they are: the fonts are copied beside it.
  external: ['*.woff2'],
  logLevel: 'warning',
});

// Excalidraw's fonts (dist/prod/fonts of the package) as dist/fonts.
const pkg = join(here, 'node_modules/@excalidraw/excalidraw');
cpSync(join(pkg, 'dist/prod/fonts'), join(dist, 'fonts'), { recursive: true });

writeFileSync(join(dist, 'index.html'), `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Excalidraw peer</title>
<link rel="stylesheet" href="/main.css">
<script>window.EXCALIDRAW_ASSET_PATH = '/';</script>
<style>html, body, #root { margin: 0; height: 100%; }</style>
</head>
<body>
<div id="root"></div>
<script type="module" src="/main.js"></script>
</body>
</html>
`);
console.log(`built ${dist}`);
