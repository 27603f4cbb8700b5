// main() of the multi-rank comm tests: MPI up, GoogleTest run on every rank, and
// the first failed assertion on any rank aborts the whole job (MPI_Abort), so
// no rank is left waiting in a collective its failed peer will never join.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

namespace {

class AbortOnFailure : public testing::EmptyTestEventListener {
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::fprintf(stderr, "[rank %d] FAILED at %s:%d: %s\n[rank %d] aborting the job\n", rank,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary(), rank);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) delete listeners.Release(listeners.default_result_printer());  // one report, from rank 0
  listeners.Append(new AbortOnFailure);
  int rc = RUN_ALL_TESTS();
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Finalize();
  return rc;
}
