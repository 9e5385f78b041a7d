//! Rendering compiled plans as Graphviz DOT and Mermaid. (Being written: see issue 2.)
