/* Test app: rank 0 reports what the launch gave the app, then sleeps and exits as asked.
 *
 *   mpi_probe [--sleep SECONDS] [--exit CODE] [--write FILE] [ARGS...]
 *
 * Rank 0 prints "size=N", one "rank=R host=H cwd=D" line per rank (gathered, so
 * lines never interleave) and "argv=..." with the arguments it received.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE 1024

int main(int argc, char **argv) {
    int rank, size, code = 0;
    double nap = 0.0;
    const char *write_to = NULL;
    char mine[LINE], host[256], cwd[512];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sleep") && i + 1 < argc) nap = atof(argv[++i]);
        else if (!strcmp(argv[i], "--exit") && i + 1 < argc) code = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--write") && i + 1 < argc) write_to = argv[++i];
    }
    gethostname(host, sizeof host);
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "?");
    snprintf(mine, LINE, "rank=%d host=%s cwd=%s", rank, host, cwd);

    char *all = rank == 0 ? malloc((size_t)size * LINE) : NULL;
    MPI_Gather(mine, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("size=%d\n", size);
        for (int r = 0; r < size; r++) printf("%s\n", all + (size_t)r * LINE);
        printf("argv=");
        for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? " " : "", argv[i]);
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "probe stderr from rank 0\n");
        if (write_to) {
            FILE *fp = fopen(write_to, "w");
            if (fp) { fprintf(fp, "%d\n", size); fclose(fp); }
        }
        free(all);
    }
    if (nap > 0) usleep((useconds_t)(nap * 1e6));
    MPI_Finalize();
    return code;
}
