/**
 * The hono application: a thin layer whose routes parse requests and call the sensor, status and
 * metrics modules. Operations routes live here (`/metrics`, `/healthz`, `/readyz`, `/status`); the
 * analyst's page (`/`, src/web) and the query routes (`extra.routes`) are mounted beside them.
 */
import { Hono } from "hono";
import type { SensorView } from "./view.ts";
import { SensorMetrics } from "./metrics.ts";
import { readiness, StatusTracker } from "./status.ts";
import { installPage } from "../web/mod.ts";
import { sensorSource } from "../web/sensor_source.ts";
import type { OpenFiles } from "../query/open_files.ts";
import type { PageSource, Setting } from "../web/source.ts";
import type { RateHistory } from "../web/rate_history.ts";

export { readServerSecrets, readTokenFile } from "./auth.ts";

export type { SensorView } from "./view.ts";

/** Everything besides the sensor that `createApp` may be given. */
export interface AppExtras {
  /** More routes (queries), mounted at "/". */
  routes?: Hono;
  /**
   * Bearer token every route requires (`Authorization: Bearer <token>`), from --token-file;
   * /healthz, /readyz and /metrics stay open when `openMetrics` is set.
   */
  token?: string;
  /** --open-metrics: leave /metrics and the health endpoints open when a token is required. */
  openMetrics?: boolean;
  /** The metrics registry to expose; one is made for the sensor when left out. */
  metrics?: SensorMetrics;
  /** The running configuration the status view lists. */
  settings?: readonly Setting[];
  /** Recent worker rates for the status view's sparklines (sampled by the server). */
  history?: RateHistory;
  /** The page's data; the sensor's own archive when left out (the fleet passes its own). */
  source?: PageSource;
  /** Clients reach the server over TLS: session cookies are Secure. */
  secure?: boolean;
  /** The page reads these open files too, as the query routes do (the same instance). */
  openFiles?: OpenFiles;
  /** Community ID seed of the page's records and `community-id` terms. */
  communityIdSeed?: number;
}

/** Builds the routes for a sensor. */
export function createApp(sensor: SensorView, extra: AppExtras = {}): Hono {
  const app = new Hono();
  const metrics = extra.metrics ?? new SensorMetrics(sensor);
  const status = new StatusTracker(sensor, { disk: () => metrics.disk() });
  const noStore = { "Cache-Control": "no-store" };

  const openFiles = extra.openFiles;
  const source = extra.source ?? sensorSource({
    catalog: () => sensor.catalog(),
    openInputs: openFiles === undefined ? undefined : () => openFiles.inputs(),
    communityIdSeed: extra.communityIdSeed,
    report: () => status.report(),
    settings: extra.settings ?? [],
    history: extra.history,
  });
  installPage(app, {
    source,
    token: extra.token,
    openMetrics: extra.openMetrics,
    secure: extra.secure,
    parse: { communityIdSeed: extra.communityIdSeed },
  });

  app.get("/healthz", (c) => c.text("ok\n", 200, noStore));
  app.get("/readyz", (c) => {
    const r = readiness(sensor);
    return r.ready
      ? c.text("ready\n", 200, noStore)
      : c.text(r.reasons.join("\n") + "\n", 503, noStore);
  });
  app.get("/metrics", async (c) => {
    const text = await metrics.metricsText();
    return c.body(text, 200, { "Content-Type": metrics.contentType, ...noStore });
  });
  app.get("/status", (c) => c.json(status.report(), 200, noStore));

  if (extra.routes !== undefined) app.route("/", extra.routes);
  return app;
}
