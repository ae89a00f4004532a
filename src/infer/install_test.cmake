# ctest infer_install: `cmake --install` libtpsinfer into a temporary prefix, build examples/
# against it with find_package and with pkg-config, and classify an image with each build.
# Variables: BUILD_DIR, SOURCE_DIR, WORK_DIR, C_COMPILER, EXTRA_C_FLAGS (the sanitizer flags of an
# ASan build: a sanitized library needs its runtime linked into the application).
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
set(model ${SOURCE_DIR}/tests/fixtures/infer_tiny.h5)
set(image ${SOURCE_DIR}/tests/fixtures/data/smooth0.jpg)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component tpsinfer)
foreach(f include/tps_infer.h lib/libtpsinfer.so lib/pkgconfig/tpsinfer.pc lib/cmake/tpsinfer/tpsinferConfig.cmake)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "cmake --install did not put ${f} in place")
  endif()
endforeach()

# 1. find_package(tpsinfer)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release "-DCMAKE_C_FLAGS=${EXTRA_C_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/classify ${model} ${image})
if(NOT last_output MATCHES "smooth0.jpg" OR NOT last_output MATCHES "%  class_")
  message(FATAL_ERROR "classify (find_package build) printed no classes:\n${last_output}")
endif()

# patch_features (the transfer output, tps_patch_grid) builds too; the dTPS fixture removes
# tokens, so it must refuse with the reason rather than write a grid with holes
execute_process(COMMAND ${WORK_DIR}/build/patch_features ${model} ${image} ${WORK_DIR}/grid.f32
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "dtps removes tokens")
  message(FATAL_ERROR "patch_features on a dTPS model: exit ${rc}, expected the refusal:\n${out}\n${err}")
endif()

# 2. pkg-config
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
run(${PKG_CONFIG} --cflags --libs tpsinfer)
separate_arguments(flags UNIX_COMMAND "${last_output}")
separate_arguments(extra UNIX_COMMAND "${EXTRA_C_FLAGS}")
run(${C_COMPILER} -std=c11 -Wall -Wextra -Werror ${extra} ${SOURCE_DIR}/examples/classify.c ${flags}
    -Wl,-rpath,${prefix}/lib -o ${WORK_DIR}/classify_pc)
run(${WORK_DIR}/classify_pc ${model} ${image})
if(NOT last_output MATCHES "%  class_")
  message(FATAL_ERROR "classify (pkg-config build) printed no classes:\n${last_output}")
endif()
# 3. the installed package's version is the header's
file(STRINGS ${prefix}/include/tps_infer.h ver REGEX "^#define TPS_INFER_VERSION_(MAJOR|MINOR) ")
string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*" "\\1.\\2.0" header_version "${ver}")
run(${PKG_CONFIG} --modversion tpsinfer)
string(STRIP "${last_output}" pc_version)
if(NOT pc_version STREQUAL header_version)
  message(FATAL_ERROR "pkg-config says version ${pc_version}, the installed tps_infer.h ${header_version}")
endif()
message(STATUS "libtpsinfer installs and the example builds against it both ways")
