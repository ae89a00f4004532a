# Writes OUT (a header defining TPSC_GIT_DESCRIBE) from `git describe`, at every build, but
# touches the file only when the text changes, so an unchanged tree recompiles nothing.
execute_process(COMMAND git describe --always --dirty --tags
  WORKING_DIRECTORY ${SRC} OUTPUT_VARIABLE desc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT desc)
  set(desc "unknown")
endif()
set(text "#define TPSC_GIT_DESCRIBE \"${desc}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
