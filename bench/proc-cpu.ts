// CPU time of processes, read from /proc/<pid>/stat (utime + stime, in clock ticks), so a
// benchmark can charge each answer with the CPU every process spent on it. A "tree" is a process
// and its descendants; children that exited were reaped by a member, whose cutime + cstime then
// hold their time, so summing all four fields over the live tree loses nothing between samples.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`), read once, when first needed. */
export function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return ticksPerSecond;
}

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** Own utime + stime. */
  readonly ownTicks: number;
  /** utime + stime of reaped children (cutime + cstime). */
  readonly reapedTicks: number;
}

/** Parses one /proc/<pid>/stat line; the command name may hold spaces and parentheses. */
export function parseStat(line: string): ProcStat {
  const close = line.lastIndexOf(')');
  const pid = Number(line.slice(0, line.indexOf(' ')));
  // After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …
  const fields = line.slice(close + 2).split(' ');
  const num = (index: number) => Number(fields[index]);
  return { pid, ppid: num(1), ownTicks: num(11) + num(12), reapedTicks: num(13) + num(14) };
}

function readStat(pid: number): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined; // gone between the listing and the read
  }
}

function allStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) stats.push(stat);
  }
  return stats;
}

export interface TreeUsage {
  /** CPU ticks of the process and all its descendants (utime + stime, reaped children included). */
  readonly ticks: number;
  /**
   * Time their live threads spent runnable but waiting for a CPU (/proc/<pid>/task/<tid>/schedstat):
   * on a shared machine, how much of a run the process was starved rather than busy.
   */
  readonly runQueueWaitMicros: number;
}

function runQueueWaitNanos(pid: number): number {
  let total = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const tid of tasks) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1] ?? 0);
    } catch {
      // thread gone meanwhile
    }
  }
  return total;
}

/** CPU and run-queue wait of a process and its descendants, or undefined when the root is gone. */
export function treeUsage(rootPid: number): TreeUsage | undefined {
  const stats = allStats();
  const root = stats.find((stat) => stat.pid === rootPid);
  if (!root) return undefined;
  const children = new Map<number, ProcStat[]>();
  for (const stat of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat]);
  const members = [root];
  for (let i = 0; i < members.length; i++) members.push(...(children.get((members[i] as ProcStat).pid) ?? []));
  let ticks = 0;
  let waitNanos = 0;
  for (const member of members) {
    ticks += member.ownTicks + member.reapedTicks;
    waitNanos += runQueueWaitNanos(member.pid);
  }
  return { ticks, runQueueWaitMicros: waitNanos / 1000 };
}

/** The command name of a process (/proc/<pid>/comm), or undefined when there is no such process. */
export function commandName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The parent of a process (e.g. a Postgres backend's postmaster). */
export function parentPid(pid: number): number | undefined {
  return readStat(pid)?.ppid;
}

export function ticksToMicros(ticks: number): number {
  return (ticks * 1_000_000) / clockTicksPerSecond();
}

/**
 * The process listening on 127.0.0.1:<port> or 0.0.0.0:<port> over TCP (IPv4), found through
 * /proc/net/tcp (the socket's inode) and /proc/<pid>/fd (who holds it).
 */
export function pidListeningOn(port: number): number | undefined {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    // local_address is fields[1] (ADDR:PORT in hex), st is fields[3] (0A = LISTEN), inode is fields[9].
    if (fields[3] === '0A' && fields[1]?.endsWith(`:${portHex}`) && fields[9]) inodes.add(`socket:[${fields[9]}]`);
  }
  if (inodes.size === 0) return undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}
