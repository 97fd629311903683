/* Test app: every rank reports the GPUs it sees, then sleeps.
 *
 *   gpu_probe [--sleep SECONDS]
 *
 * Rank 0 prints one line per rank (gathered, so lines never interleave):
 * "rank=R node=N cuda=C rocr=O ze=Z start=T0 end=T1", where C, O and Z are the
 * rank's CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES and ZE_AFFINITY_MASK ("-" when
 * unset), N is SLURMD_NODENAME or the host name, and T0 / T1 are wall-clock seconds
 * taken before and after the sleep (so concurrent tasks can be compared).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define LINE 512

static const char *env_or_dash(const char *name) {
    const char *v = getenv(name);
    return v ? v : "-";
}

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

int main(int argc, char **argv) {
    int rank, size;
    double nap = 0.0, start, end;
    char mine[LINE], host[256];

    MPI_Init(&argc, &argv);
    start = now();
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--sleep") && i + 1 < argc) nap = atof(argv[++i]);
    if (getenv("SLURMD_NODENAME")) snprintf(host, sizeof host, "%s", getenv("SLURMD_NODENAME"));
    else gethostname(host, sizeof host);
    if (nap > 0) usleep((useconds_t)(nap * 1e6));
    end = now();
    snprintf(mine, LINE, "rank=%d node=%s cuda=%s rocr=%s ze=%s start=%.6f end=%.6f", rank, host,
             env_or_dash("CUDA_VISIBLE_DEVICES"), env_or_dash("ROCR_VISIBLE_DEVICES"),
             env_or_dash("ZE_AFFINITY_MASK"), start, end);
    char *all = rank == 0 ? malloc((size_t)size * LINE) : NULL;
    MPI_Gather(mine, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int r = 0; r < size; r++) printf("%s\n", all + (size_t)r * LINE);
        fflush(stdout);
        free(all);
    }
    MPI_Finalize();
    return 0;
}
