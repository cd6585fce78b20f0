/* Signal names without the "SIG" prefix ("TERM", "TTIN", "RTMIN+3"), for logs, status
 * output and the BPF counters' labels. Both sides of fork() use them. */
#pragma once

/* Returns a static string; "RTMIN+N" and "SIG<number>" forms use a per-signal static
 * buffer, so the result stays valid. */
const char *signal_name(int sig);

/* Accepts "TERM", "SIGTERM", "term" or a number; returns the signal or -1. */
int signal_from_name(const char *name);
