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
 * The descriptor this process has open on `path` (Deno does not expose it; /proc/self/fd lists
 * it), or undefined. The listing includes the descriptor that reads it, closed by the time its
 * link is read: descriptors that vanish are skipped.
 */
export function openFd(path: string): number | undefined {
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`) === path) return Number(entry.name);
    } catch {
      // closed meanwhile
    }
  }
  return undefined;
}
