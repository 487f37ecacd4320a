/**
 * The one root guard of the test suite. A test that needs root (namespaces, veth pairs, tmpfs
 * mounts, live capture, dropping privileges) is declared through `rootOnly`: without root it is
 * reported as ignored, with its reason, outside CI, and it fails under CI=true — a missing
 * privilege never turns into a silent pass. Tests under tests/unit/ cannot use it: the unit tier
 * runs without --allow-sys, so asking for the uid throws there.
 */

/** True when the test process runs as root. */
export const IS_ROOT: boolean = Deno.uid() === 0;

/** True under CI=true, where a test that cannot run is a failure, not a skip. */
export const IN_CI: boolean = Deno.env.get("CI") === "true";

/** What `rootOnly` guards: a Deno.test or a test step definition. */
export interface GuardedTest {
  name: string;
  ignore?: boolean;
  fn: (t: Deno.TestContext) => void | Promise<void>;
}

/**
 * Marks a test (or a step) as needing root for `why` (e.g. "a tmpfs mount"). Without root it is
 * ignored outside CI, with a warning that names the reason, and under CI=true it runs and fails
 * at once with that reason.
 */
export function rootOnly<T extends GuardedTest>(why: string, definition: T): T {
  const skip = !IS_ROOT && !IN_CI;
  if (skip && definition.ignore !== true) {
    console.warn(
      `Ignored "${definition.name}": needs root for ${why} (CI=true makes it a failure)`,
    );
  }
  const fn = definition.fn;
  return {
    ...definition,
    ignore: definition.ignore === true || skip,
    fn: (t: Deno.TestContext) => {
      if (!IS_ROOT) {
        throw new Error(
          `${definition.name}: needs root for ${why}, found uid ${Deno.uid()}; run the suite as ` +
            "root (under CI=true a missing privilege is a failure, not a skip)",
        );
      }
      return fn(t);
    },
  };
}
