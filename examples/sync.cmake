# Examples of the sync primitives (included by examples/CMakeLists.txt):
#   producer_consumer  asyncio's Queue example: a bounded queue, task_done/join, close
#   semaphore          a semaphore limiting concurrency to 3
foreach(ex producer_consumer semaphore)
  add_executable(${ex} ${CMAKE_CURRENT_LIST_DIR}/${ex}.c)
  target_link_libraries(${ex} PRIVATE weft)
  if(BUILD_TESTING)
    add_test(NAME example_${ex} COMMAND ${ex})
    set_tests_properties(example_${ex} PROPERTIES LABELS "example;sync" TIMEOUT 60)
  endif()
endforeach()
