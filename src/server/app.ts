/**
 * The hono application: a thin layer whose routes parse requests and call the sensor, query and metrics
 * modules. Each feature adds its routes here through the `SensorView` it is given.
 */
import { Hono } from "hono";

/** What the server can ask of the running sensor (or of an archive served without capture). */
export interface SensorView {
  /** Process alive: always true while the server answers. */
  readonly startedAt: number;
}

/** Builds the routes for a sensor. */
export function createApp(_sensor: SensorView): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.text("ok\n"));
  return app;
}
