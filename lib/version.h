/* SPDX-License-Identifier: Apache-2.0 */
/* The release, for isthmus -v, isthmusctl --version, show info and the
 * packages (packaging/package.conf reads it from `isthmus -v`). */
#ifndef ISM_LIB_VERSION_H
#define ISM_LIB_VERSION_H

#define ISM_VERSION "0.3.0"

#endif
