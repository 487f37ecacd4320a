/**
 * Debian's Chromium driven by puppeteer-core for the page's tests: the system browser (nothing is
 * downloaded), headless, with a fresh profile directory removed afterwards. Under CI=true a browser
 * that cannot start fails the test; elsewhere the caller may skip.
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";

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

/** Screenshots of the page at 1280×800 and 390×844 in test-output/web/NAME-…png. */
export async function screenshots(page: Page, name: string): Promise<void> {
  const dir = testOutputDir("web");
  for (const [width, height, label] of [[1280, 800, "desktop"], [390, 844, "phone"]] as const) {
    await page.setViewport({ width, height });
    await page.screenshot({ path: `${dir}/${name}-${label}-${width}x${height}.png` });
  }
  await page.setViewport({ width: 1280, height: 800 });
}

/** Clicks `selector` and returns the bytes of the one file the browser saves into `dir`. */
export async function download(page: Page, selector: string, dir: string): Promise<Uint8Array> {
  await Deno.mkdir(dir, { recursive: true });
  const cdp = await page.createCDPSession();
  await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
  await page.click(selector);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    if (names.length === 1 && !names[0].endsWith(".crdownload")) {
      return await Deno.readFile(`${dir}/${names[0]}`);
    }
    if (Date.now() > deadline) throw new Error(`no finished download in ${dir}: ${names}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One row of the flows table as the browser shows it ("" for a column the table lacks). */
export interface ShownRow {
  sensor: string;
  src: string;
  dst: string;
  packets: number;
}

/** The flows table's rows, read by column name. */
export async function shownRows(page: Page): Promise<ShownRow[]> {
  const headers = await page.$$eval(
    "#flows thead th",
    (ths) => ths.map((th) => (th.textContent ?? "").replace(/ [▲▼]$/, "")),
  );
  return await page.$$eval("#flows tbody tr", (rows, headers) =>
    rows.map((tr) => {
      const cells = [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "");
      const cell = (name: string) => headers.includes(name) ? cells[headers.indexOf(name)] : "";
      return {
        sensor: cell("Sensor"),
        src: cell("Source"),
        dst: cell("Destination"),
        packets: Number(cell("Stored packets").replaceAll(",", "")),
      };
    }), headers);
}

/** The counts the page shows: flows and packets of every match, and the histogram's sum. */
export async function shownTotals(
  page: Page,
): Promise<{ flows: number; packets: number; histogram: number }> {
  const count = await page.$eval("#count", (p) => ({
    flows: Number(p.querySelector("[data-flows]")?.getAttribute("data-flows")),
    packets: Number(p.querySelector("[data-packets]")?.getAttribute("data-packets")),
  }));
  const histogram = await page.$$eval(
    "#hist rect[data-packets]",
    (rects) => rects.reduce((s, r) => s + Number(r.getAttribute("data-packets")), 0),
  );
  return { ...count, histogram };
}

/** Messages of every dialog (alert, confirm) the page opens, dismissed: none may come from data. */
export function watchDialogs(page: Page): string[] {
  const messages: string[] = [];
  page.on("dialog", (d) => {
    messages.push(d.message());
    d.dismiss();
  });
  return messages;
}

/** Console errors and uncaught exceptions of the page (a CSP refusal shows up here). */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return errors;
}
