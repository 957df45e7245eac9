/*
 * fsbench.c - how many "write 4 KiB, fsync, rename" a second this disk
 * does: the cost of one durable spool file without group commit.
 *
 *   fsbench DIR [SECONDS [THREADS [SIZE]]]
 *
 * Each thread loops: create DIR/tmp-T-N, write SIZE bytes, fsync, rename
 * to DIR/q-T-N, unlink the previous one. Prints one key=value line.
 * Build: cc -O2 -Wall -o fsbench fsbench.c -lpthread
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static double seconds = 3, t_end;
static size_t size = 4096;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	long id = (long)arg, n = 0;
	char *buf = malloc(size);
	memset(buf, 'x', size);
	char tmp[4096], fin[4096], prev[4096] = "";
	while (now() < t_end) {
		snprintf(tmp, sizeof tmp, "%s/tmp-%ld-%ld", dir, id, n);
		snprintf(fin, sizeof fin, "%s/q-%ld-%ld", dir, id, n);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) { perror(tmp); exit(1); }
		if (write(fd, buf, size) != (ssize_t)size) { perror("write"); exit(1); }
		if (fsync(fd) < 0) { perror("fsync"); exit(1); }
		close(fd);
		if (rename(tmp, fin) < 0) { perror("rename"); exit(1); }
		if (prev[0])
			unlink(prev);
		memcpy(prev, fin, sizeof prev);
		n++;
	}
	if (prev[0])
		unlink(prev);
	free(buf);
	return (void *)n;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: fsbench DIR [SECONDS [THREADS [SIZE]]]\n");
		return 2;
	}
	dir = argv[1];
	int threads = 1;
	if (argc > 2) seconds = atof(argv[2]);
	if (argc > 3) threads = atoi(argv[3]);
	if (argc > 4) size = (size_t)atol(argv[4]);
	pthread_t th[256];
	if (threads < 1 || threads > 256)
		return 2;
	double t0 = now();
	t_end = t0 + seconds;
	for (long i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, run, (void *)i);
	long total = 0;
	for (int i = 0; i < threads; i++) {
		void *r;
		pthread_join(th[i], &r);
		total += (long)r;
	}
	double el = now() - t0;
	printf("fsbench threads=%d size=%zu files=%ld seconds=%.2f per_s=%.0f\n",
	       threads, size, total, el, total / el);
	return 0;
}
