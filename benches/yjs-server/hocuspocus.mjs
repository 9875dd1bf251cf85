// The stock Hocuspocus server for benches/live.rs: no extensions, so documents live in memory
// only. PORT from the environment.
import { Server } from "@hocuspocus/server";

const server = new Server({ port: Number(process.env.PORT), address: "127.0.0.1", quiet: true });
await server.listen();
