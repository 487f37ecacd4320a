/** HTTP server: hono routes served by Deno.serve. */
import { createApp, type SensorView } from "./app.ts";

export type { SensorView } from "./app.ts";

/** Where and how to listen. */
export interface ListenOptions {
  host: string;
  port: number;
  cert?: string;
  key?: string;
}

/** Starts the server; resolves once it listens. */
export function startServer(sensor: SensorView, options: ListenOptions): Deno.HttpServer {
  const app = createApp(sensor);
  const tls = options.cert && options.key ? { cert: options.cert, key: options.key } : {};
  return Deno.serve({
    hostname: options.host,
    port: options.port,
    ...tls,
    onListen: () => {},
  }, app.fetch);
}
