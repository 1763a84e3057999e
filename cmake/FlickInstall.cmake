include(CMakePackageConfigHelpers)

install(DIRECTORY include/flick DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} PATTERN "*.in" EXCLUDE)
install(FILES ${FLICK_GENERATED_INCLUDE_DIR}/flick/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flick)
install(TARGETS flick EXPORT flickTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT flickTargets NAMESPACE flick:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flick)

configure_package_config_file(cmake/flickConfig.cmake.in
  ${PROJECT_BINARY_DIR}/flickConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flick)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/flickConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/flickConfig.cmake ${PROJECT_BINARY_DIR}/flickConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flick)

# The .pc file finds the prefix relative to itself, so an installed tree can be moved.
file(RELATIVE_PATH FLICK_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" FLICK_PC_TO_PREFIX "${FLICK_PC_TO_PREFIX}")
configure_file(cmake/flick.pc.in ${PROJECT_BINARY_DIR}/flick.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/flick.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
