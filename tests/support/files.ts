/**
 * Files on disk as tests look at them: whether a path is there, the temporary files of an archive,
 * and the descriptor this process holds for an open file.
 */

/** True when something (a file, a folder, a link, even a dangling one) is at `path`. */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Every `.tmp` file under `dir` (files being written, or left by a crash), depth first. */
export function tempFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...tempFiles(path));
    else if (entry.name.endsWith(".tmp")) found.push(path);
  }
  return found;
}

/**
 * What each descriptor of this process points at (Deno does not expose descriptors;
 * /proc/self/fd lists them). The listing includes the descriptor that reads it, closed by the
 * time its link is read: descriptors that vanish meanwhile are left out.
 */
export function openFdTargets(): Map<number, string> {
  const targets = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      targets.set(Number(entry.name), Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch {
      // closed meanwhile
    }
  }
  return targets;
}

/** The descriptor this process has open on `path`, or undefined. */
export function openFd(path: string): number | undefined {
  for (const [fd, target] of openFdTargets()) if (target === path) return fd;
  return undefined;
}
