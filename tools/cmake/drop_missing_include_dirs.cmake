# Passed as -DCMAKE_PROJECT_INCLUDE=<this file> by tools/setup only (venv builds
# on ROS 2 wheels from PyPI). Those wheels export include directories of the
# machine that built them, which CMake refuses. At the end of configure, drop
# every absolute include directory that does not exist from the imported
# targets. On a real ROS 2 install nothing is missing and nothing changes.
function(espargos_drop_missing_include_dirs)
  get_property(imported DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(kept "")
    foreach(dir IN LISTS dirs)
      if(IS_ABSOLUTE "${dir}" AND NOT dir MATCHES "\\$<" AND NOT EXISTS "${dir}")
        continue()
      endif()
      list(APPEND kept "${dir}")
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL espargos_drop_missing_include_dirs)
