/* What the arbiter registers with its loop, one tag per kind of source: the loop
 * (loop.h) carries the tag and the arbiter's dispatch switch (arbiter.c) reads it.
 *
 * Middle layer: the pool, the control socket, the metrics endpoint and the readiness
 * looks tag their own sources here; the wiring tags the rest. */
#pragma once

#include "loop.h"

enum source_type {
	SOURCE_SIGNALFD,
	SOURCE_TIMERFD,
	SOURCE_WORKER, /* a worker's pidfd: readable when the worker exited */
	SOURCE_CONTROL_LISTENER,
	SOURCE_CONTROL_CONN,
	SOURCE_BPF,    /* the probes' ring buffer */
	SOURCE_NOTIFY, /* the workers' NOTIFY_SOCKET */
	SOURCE_METRICS_LISTENER,
	SOURCE_METRICS_CONN,
	SOURCE_UPGRADE_CHECK, /* the new binary's --check, before a USR2 exec */
	SOURCE_LOG,	      /* our log, watched for room only while lines wait (log.h) */
	SOURCE_CONFIG_READ,   /* a HUP's config file, from the child that reads it */
	SOURCE_SERVING_LOOK,  /* a look at /proc for readiness (serving.h): its pidfd */
	SOURCE_LISTEN_WATCH,  /* a listening socket, until its first connection (autoscale.h) */
};
