/**
 * Where the kit lives on disk, and where its runs and caches go. Paths are resolved from the kit's own real location
 * (its sources under tsx, or its built dist/), never from the kernel's cwd — except for an installed copy (inside a
 * `node_modules` folder), which must not write into itself: there runs go to the working folder and caches to the
 * user's cache folder.
 */
import { existsSync, readFileSync, realpathSync } from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The project root: the nearest folder above the kit's code (sources or dist/) whose package.json names `vitpeft`. */
export function projectRoot(): string {
  let dir = realpathSync(__dirname);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'vitpeft') return dir;
      } catch {
        /* not JSON: keep looking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`projectRoot: no package.json named 'vitpeft' above ${realpathSync(__dirname)}`);
    dir = up;
  }
}

/** Resolve `p` against the project root (absolute paths are kept). */
export function fromRoot(...p: string[]): string {
  return path.resolve(projectRoot(), ...p);
}

/** Whether the kit runs from an installed copy (its root is inside a `node_modules` folder), not from a checkout. */
export function isInstalledCopy(root: string = projectRoot()): boolean {
  return root.split(path.sep).includes('node_modules');
}

/**
 * Where the kit keeps caches (the embedded datasets): `<checkout>/.cache`, or for an installed copy
 * `$XDG_CACHE_HOME/vitpeft` (default `~/.cache/vitpeft`). `VITPEFT_CACHE_DIR` overrides the embedded data's own folder.
 */
export function kitCacheDir(): string {
  const root = projectRoot();
  if (!isInstalledCopy(root)) return path.join(root, '.cache');
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'vitpeft');
}

/** Where run folders go by default: `<checkout>/runs`, or `./runs` of the working folder for an installed copy. */
export function defaultRunsDir(): string {
  const root = projectRoot();
  return isInstalledCopy(root) ? path.resolve('runs') : path.join(root, 'runs');
}
