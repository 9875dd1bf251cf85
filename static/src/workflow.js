// The workflow's browser code (one bundle, embedded in the binary): the canvas page and the
// screen page, each brought to life over Arno's y-protocols WebSocket.
import { startCanvas } from './canvas.js';
import { startScreen } from './screen.js';

const canvas = document.getElementById('workflow');
if (canvas) startCanvas(canvas);
const screen = document.getElementById('screen-page');
if (screen) startScreen(screen);
