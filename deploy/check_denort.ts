/**
 * Run by `deno task compile` before `deno compile`: the compiler needs Deno's `denort` runtime of the
 * same version, from $DENORT_BIN, Deno's download cache or dl.deno.land. When none of them can
 * supply it, this says so in one line with what to do, instead of Deno's download error.
 * Exit status: 0 when compiling can go ahead, 1 when not.
 */

const VERSION = Deno.version.deno;
const ZIP = "denort-x86_64-unknown-linux-gnu.zip";
const URL_OF_ZIP = `https://dl.deno.land/release/v${VERSION}/${ZIP}`;
const REMEDY = `download ${URL_OF_ZIP} where there is network, unzip it here and run ` +
  "DENORT_BIN=$PWD/denort deno task compile";

/** Where `deno compile` keeps the runtimes it downloaded. */
function cachedZip(): string {
  const home = Deno.env.get("HOME") ?? "";
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${home}/.cache`;
  const denoDir = Deno.env.get("DENO_DIR") ?? `${cache}/deno`;
  return `${denoDir}/dl/release/v${VERSION}/${ZIP}`;
}

function isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Why dl.deno.land cannot supply the runtime, or undefined when it can. */
async function downloadProblem(): Promise<string | undefined> {
  try {
    const response = await fetch(URL_OF_ZIP, {
      method: "HEAD",
      signal: AbortSignal.timeout(10_000),
    });
    await response.body?.cancel();
    return response.ok ? undefined : `dl.deno.land answered ${response.status}`;
  } catch (error) {
    return `dl.deno.land cannot be reached (${
      error instanceof Error ? error.message.split("\n")[0] : error
    })`;
  }
}

async function main(): Promise<number> {
  const given = Deno.env.get("DENORT_BIN");
  if (given !== undefined && given !== "") {
    if (isExecutableFile(given)) return 0;
    console.error(
      `DENORT_BIN=${given} is not an executable file: set it to the denort of Deno ${VERSION} ` +
        `(${REMEDY})`,
    );
    return 1;
  }
  if (exists(cachedZip())) return 0;
  const problem = await downloadProblem();
  if (problem === undefined) return 0;
  console.error(
    `deno compile needs Deno's denort ${VERSION} runtime: it is not in ${cachedZip()} and ` +
      `${problem}; ${REMEDY}`,
  );
  return 1;
}

Deno.exit(await main());
