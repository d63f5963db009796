// The mesh-wide rows: forming a mesh of member processes (--role=
// mesh_member) and what it costs: mesh_link_setup_pair and mesh_pair_join
// (two nodes), mesh<N>_formation and mesh<N>_idle (N nodes: CPU and
// resident shared memory while idle).
#ifndef SHMESH_BENCH_MESH_FORMATION_H_
#define SHMESH_BENCH_MESH_FORMATION_H_

#include <string>

#include "bench/results.h"

namespace shmesh_bench {

struct FormationPlan {
  int setup_reps = 5;   // two-node meshes formed (mesh_link_setup_pair)
  int mesh16_reps = 3;  // N-node meshes formed; the last one is measured idle
  int idle_s = 10;      // seconds the idle mesh's CPU is measured over
  int nodes = 16;       // N
};

// mesh_link_setup_pair and mesh_pair_join, one value per formed pair.
void RunSetup(Results& results, const FormationPlan& plan, const std::string& tmp);
// mesh<N>_formation per repetition, then mesh<N>_idle of the last mesh;
// `idle_note` gets the lines printed under the table (by thread, memory).
void RunMesh16(Results& results, const FormationPlan& plan, const std::string& tmp, std::string& idle_note);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_MESH_FORMATION_H_
