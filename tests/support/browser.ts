/**
 * Debian's Chromium driven by puppeteer-core for the page's tests: the system browser (nothing is
 * downloaded), headless, with a fresh profile directory removed afterwards. Under CI=true a browser
 * that cannot start fails the test; elsewhere the caller may skip.
 */
import puppeteer, { type Browser } from "puppeteer-core";

/** The system browser (`chromium` from apt, listed in .ci/deps). */
export const CHROMIUM = "/usr/bin/chromium";

/** Flags for a headless browser as root in a container, without any network of its own. */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A running browser and the profile directory it owns. */
export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/** True when the system browser exists; under CI=true its absence is an error. */
export function requireChromium(what: string): boolean {
  try {
    Deno.statSync(CHROMIUM);
    return true;
  } catch {
    if (Deno.env.get("CI") === "true") {
      throw new Error(`${what} needs ${CHROMIUM} (apt-get install chromium; .ci/deps)`);
    }
    console.warn(`skipping ${what}: ${CHROMIUM} is missing`);
    return false;
  }
}

/** Starts Chromium with a fresh profile. */
export async function launchBrowser(): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "cc-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: CHROMIUM_FLAGS,
  });
  return {
    browser,
    async close() {
      await browser.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}

/** `chromium --headless --dump-dom URL`: the DOM after the page's scripts ran (virtual time). */
export async function dumpDom(url: string): Promise<string> {
  const profile = await Deno.makeTempDir({ prefix: "cc-chromium-" });
  try {
    const out = await new Deno.Command(CHROMIUM, {
      args: [
        ...CHROMIUM_FLAGS,
        `--user-data-dir=${profile}`,
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`chromium --dump-dom failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

/** Where tests leave screenshots for a person to look at (`test-output/`, ignored by git). */
export function testOutputDir(sub: string): string {
  const dir = new URL(`../../test-output/${sub}/`, import.meta.url).pathname;
  Deno.mkdirSync(dir, { recursive: true });
  return dir;
}
