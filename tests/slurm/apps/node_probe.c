/* Test app for multi-node launches: where each rank landed, and the launch line that started it.
 *
 *   node_probe [--sleep SECONDS] [--unless FILE] [--mark FILE] [ARGS...]
 *
 * Rank 0 prints "size=N", one "rank=R node=NODE" line per rank (gathered, so lines never
 * interleave; NODE is $SLURMD_NODENAME, the Slurm node the rank runs on, since every node of
 * the test cluster is the same host), "prefix=..." with the $PARSL_MPI_PREFIX the ranks were
 * launched with, "job=..." with $SLURM_JOB_ID, and "argv=..." with the arguments received.  With --mark, rank 0 appends
 * "start node=NODE" to FILE (one line per run of the app); with --unless, the ranks do not sleep
 * when FILE exists.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE 256

int main(int argc, char **argv) {
    int rank, size;
    double nap = 0.0;
    const char *mark = NULL, *unless = NULL;
    char mine[LINE];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--sleep") && i + 1 < argc) nap = atof(argv[++i]);
        else if (!strcmp(argv[i], "--mark") && i + 1 < argc) mark = argv[++i];
        else if (!strcmp(argv[i], "--unless") && i + 1 < argc) unless = argv[++i];
    const char *node = getenv("SLURMD_NODENAME");
    snprintf(mine, LINE, "rank=%d node=%s", rank, node ? node : "-");

    char *all = rank == 0 ? malloc((size_t)size * LINE) : NULL;
    MPI_Gather(mine, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        const char *prefix = getenv("PARSL_MPI_PREFIX");
        printf("size=%d\n", size);
        for (int r = 0; r < size; r++) printf("%s\n", all + (size_t)r * LINE);
        const char *job = getenv("SLURM_JOB_ID");
        printf("prefix=%s\n", prefix ? prefix : "");
        printf("job=%s\n", job ? job : "-");
        printf("argv=");
        for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? " " : "", argv[i]);
        printf("\n");
        fflush(stdout);
        free(all);
        if (mark) {
            FILE *fp = fopen(mark, "a");
            if (fp) { fprintf(fp, "start node=%s\n", node ? node : "-"); fclose(fp); }
        }
    }
    if (unless && access(unless, F_OK) == 0) nap = 0.0;
    if (nap > 0) usleep((useconds_t)(nap * 1e6));
    MPI_Finalize();
    return 0;
}
