// The shmesh release: the library's version (libshmesh.so.MAJOR's soname,
// shmesh.pc, shmeshConfigVersion.cmake), the tools' --version and the C
// API's shmesh_version(). dist/install.sh reads SHMESH_VERSION from here,
// so this is the one place to change it.
#ifndef SHMESH_MESH_VERSION_H_
#define SHMESH_MESH_VERSION_H_

#define SHMESH_VERSION_MAJOR 0
#define SHMESH_VERSION_MINOR 5
#define SHMESH_VERSION_PATCH 0
#define SHMESH_VERSION "0.5.0"

#endif  // SHMESH_MESH_VERSION_H_
