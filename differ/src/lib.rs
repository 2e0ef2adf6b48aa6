//! The differ: reads two revisions of a C code base and classifies what changed, function by function.
