/**
 * Whether a process on this host is still running — and, where the kernel says (Linux `/proc`),
 * which incarnation of a pid it is, so that a new process that reuses a dead one's pid is not
 * taken for it.
 *
 * Owns: reading a process's state and start time. Must never: signal or change a process.
 */
import fs from 'node:fs';

const HAVE_PROC = fs.existsSync('/proc/self/stat');

/**
 * The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
 * parentheses): [0] is the state, [19] the start time in clock ticks since boot.
 */
function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The start time of a process as the kernel counts it, or null where that cannot be read. */
export function processStartTime(pid: number): number | null {
  const fields = statFields(pid);
  return fields ? Number(fields[19]) : null;
}

/**
 * Whether process `pid` is running (a zombie — exited, not yet reaped — is not). With `startTime`
 * (not 0): only if it is that incarnation of the pid.
 */
export function processAlive(pid: number, startTime = 0): boolean {
  if (HAVE_PROC) {
    const fields = statFields(pid);
    if (!fields || fields[0] === 'Z' || fields[0] === 'X') return false;
    return startTime === 0 || Number(fields[19]) === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
