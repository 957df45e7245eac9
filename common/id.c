/*
 * id.c - queue and session ids. Queue ids are 16 characters of [0-9A-Z]:
 * 10 of microseconds since the epoch (sortable), 6 of a per-process
 * random prefix mixed with a counter, so that restarts and parallel loops
 * never collide.
 */
#include "common/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <time.h>

static const char id_digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV"; /* base 32 */

static atomic_uint_fast64_t id_counter;
static uint64_t id_salt;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void id_seed(void)
{
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&r;
	id_salt = r;
	atomic_store(&id_counter, r & 0xffff);
}

void id_queue(char out[ID_LEN + 1])
{
	pthread_once(&id_once, id_seed);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	uint64_t tail = ((id_salt >> 16) << 14) + atomic_fetch_add(&id_counter, 1);
	for (int i = 9; i >= 0; i--) {
		out[i] = id_digits[us & 31];
		us >>= 5;
	}
	for (int i = 15; i >= 10; i--) {
		out[i] = id_digits[tail & 31];
		tail >>= 5;
	}
	out[ID_LEN] = '\0';
}

uint64_t id_session(void)
{
	static atomic_uint_fast64_t next = 1;
	return atomic_fetch_add(&next, 1);
}
