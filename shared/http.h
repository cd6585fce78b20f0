/* Small HTTP helpers shared by the built-in worker and the arbiter's metrics endpoint. */
#pragma once

/* The reason phrase for a status code sigvisor sends ("Unknown" for others). */
const char *http_reason(int status);
